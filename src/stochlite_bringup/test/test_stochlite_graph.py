"""StochLite behind the sim bridge (real PyBullet, real DDS), and a short training run through the graph."""
import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Vector3Stamped
from mdemorl_msgs.msg import TaskStep
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from stochlite_bringup.sim_bridge_node import SimBridgeNode
from stochlite_bringup.tasks.stochlite_env import (StochliteEnv, is_fallen, stochlite_observation,
                                                    stochlite_step_reward)
from stochlite_bringup.tasks.stochlite_gait import foot_targets, gait_command, joint_targets, leg_phases
from stochlite_bringup.tasks.stochlite_simulation import (JOINT_LOWER_RAD, JOINT_NAMES, JOINT_UPPER_RAD,
                                                          StochliteSimulation)

pytestmark = pytest.mark.integration

DOMAIN_ID = 110 + os.getpid() % 40
TIMEOUT_S = 20.0
NS_PER_S = 1_000_000_000


def stamp_ns(stamp) -> int:
    return stamp.sec * NS_PER_S + stamp.nanosec


class QuadrupedClient(Node):
    """The agent's side: joint targets out; joint states, IMU, torso orientation and task steps in."""

    def __init__(self, context: Context) -> None:
        super().__init__("test_stochlite_client", context=context)
        self.received: dict[str, list] = {"joint_states": [], "imu": [], "torso_rpy": [], "task_step": []}
        for name, kind in (("joint_states", JointState), ("imu", Imu), ("torso_rpy", Vector3Stamped),
                           ("task_step", TaskStep)):
            self.create_subscription(kind, f"/stochlite/{name}", self.received[name].append, 10)
        self.commands = self.create_publisher(Float64MultiArray, "/stochlite/joint_commands", 10)
        self.enable = self.create_client(SetBool, "/stochlite/enable")
        self.reset = self.create_client(Trigger, "/stochlite/reset")


def spin_until(executor, predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.01)
    return True


def call(executor, client, request):
    assert client.wait_for_service(timeout_sec=TIMEOUT_S), f"{client.srv_name} not available"
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=TIMEOUT_S)
    return future.result()


def test_the_bridge_steps_stochlite_as_the_env_composes_it_and_publishes_imu_and_orientation():
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    bridge = SimBridgeNode(context=context, parameter_overrides=[Parameter("robot", value="stochlite"),
                                                                 Parameter("seed", value=3)])
    client = QuadrupedClient(context)
    executor = SingleThreadedExecutor(context=context)
    reference = StochliteSimulation(0.0, -5.0)  # the bridge's default slope (config/sim_bridge.yaml)
    try:
        for node in (bridge, client):
            executor.add_node(node)
        assert call(executor, client.enable, SetBool.Request(data=True)).success
        answer = call(executor, client.reset, Trigger.Request())
        assert answer.success and "standing pose" in answer.message and "pitch -5 deg" in answer.message
        assert spin_until(executor, lambda: client.received["task_step"] and client.received["task_step"][-1].step == 0)
        assert spin_until(executor, lambda: client.commands.get_subscription_count() > 0)
        start = client.received["joint_states"][-1]
        assert list(start.name) == list(JOINT_NAMES)
        state = reference.reset(np.array(start.position))  # the bridge's noisy standing pose
        np.testing.assert_allclose(client.received["task_step"][-1].observation,
                                   stochlite_observation(state, reference), atol=1e-5)
        t0 = stamp_ns(client.received["task_step"][-1].header.stamp)
        rng = np.random.default_rng(0)
        for k in range(1, 31):
            action = rng.uniform(-1.0, 1.0, 13)
            targets = joint_targets(foot_targets(reference.time_s, gait_command(action)))  # as StochliteEnv.step
            if k == 5:
                targets[2] = -3.5  # below the knee's limit: the bridge clamps it
            count = len(client.received["task_step"])
            client.commands.publish(Float64MultiArray(data=targets.tolist()))
            assert spin_until(executor, lambda: len(client.received["task_step"]) > count), f"no task step {k}"
            state = reference.step(np.clip(targets, JOINT_LOWER_RAD, JOINT_UPPER_RAD))
            got = client.received["task_step"][-1]
            obs = stochlite_observation(state, reference)
            assert got.step == k and got.terminated == bool(is_fallen(obs))
            np.testing.assert_allclose(got.observation, obs, atol=1e-5)
            assert got.reward == pytest.approx(stochlite_step_reward(state, reference).total, abs=1e-6)
            elapsed = (stamp_ns(got.header.stamp) - t0) / NS_PER_S  # the agent's episode time of this state
            assert elapsed == pytest.approx(k * 0.01)
            phase = leg_phases(elapsed)[0]  # the command for this state uses the phase the observation shows
            np.testing.assert_allclose(got.observation[12:], [math.sin(phase), math.cos(phase)], atol=1e-5)
        assert spin_until(executor, lambda: len(client.received["torso_rpy"]) >= 31 and len(client.received["imu"]) >= 31)
        imu, rpy = client.received["imu"][-1], client.received["torso_rpy"][-1]
        assert imu.header.frame_id == "base" and stamp_ns(imu.header.stamp) == stamp_ns(got.header.stamp)
        np.testing.assert_allclose([imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w],
                                   state.quaternion, atol=1e-6)
        np.testing.assert_allclose([imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z],
                                   state.linear_acceleration, atol=1e-6)
        np.testing.assert_allclose([rpy.vector.x, rpy.vector.y, rpy.vector.z], state.rpy, atol=1e-6)
        count = len(client.received["task_step"])
        client.commands.publish(Float64MultiArray(data=[math.nan] * 12))
        assert spin_until(executor, lambda: len(client.received["task_step"]) > count)
        assert bridge.rejected_commands == 1  # rejected and counted; that step holds the standing pose
    finally:
        executor.shutdown()
        for node in (bridge, client):
            node.destroy_node()
        reference.close()
        rclpy.try_shutdown(context=context)


def test_the_agents_commands_make_the_bridge_step_exactly_as_stochlite_env_with_the_same_seed_and_actions():
    """StochliteFeedback's servo targets at the state's stamp-derived episode time, through the bridge, give
    StochliteEnv's observations, rewards and terminations step for step: the command's phase is the env's."""
    from mdemorl_learner.agent_feedback import StochliteFeedback

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID + 2)
    bridge = SimBridgeNode(context=context, parameter_overrides=[Parameter("robot", value="stochlite"),
                                                                 Parameter("seed", value=7)])
    client = QuadrupedClient(context)
    executor = SingleThreadedExecutor(context=context)
    env = StochliteEnv(seed=7)  # the bridge's slope and noise defaults are the env's
    agent = StochliteFeedback("stochlite")
    try:
        for node in (bridge, client):
            executor.add_node(node)
        env.reset()  # the bridge drew its first reset when it started; /reset draws the second
        obs, _ = env.reset()
        assert call(executor, client.enable, SetBool.Request(data=True)).success
        assert call(executor, client.reset, Trigger.Request()).success
        assert spin_until(executor, lambda: client.received["task_step"] and client.received["task_step"][-1].step == 0)
        assert spin_until(executor, lambda: client.commands.get_subscription_count() > 0)
        np.testing.assert_allclose(client.received["task_step"][-1].observation, obs, atol=1e-5)
        t0 = stamp_ns(client.received["task_step"][-1].header.stamp)
        rng = np.random.default_rng(1)
        for k in range(1, 26):
            state = client.received["task_step"][-1]
            elapsed_s = (stamp_ns(state.header.stamp) - t0) / NS_PER_S  # what the agent uses as episode time
            # half-range actions: full-range ones tumble the robot by step 21, where a contact event turns the
            # 1e-17 s between the env's summed clock and the stamp's time into 3e-4 rad/s (measured)
            action = rng.uniform(-0.5, 0.5, 13)
            count = len(client.received["task_step"])
            client.commands.publish(Float64MultiArray(data=agent.command(action, elapsed_s)))
            assert spin_until(executor, lambda: len(client.received["task_step"]) > count), f"no task step {k}"
            obs, reward, terminated, _, _ = env.step(action)
            got = client.received["task_step"][-1]
            assert got.step == k and got.terminated == terminated
            np.testing.assert_allclose(got.observation, obs, atol=1e-5, err_msg=f"step {k}")
            assert got.reward == pytest.approx(reward, abs=1e-5)
        assert bridge.rejected_commands == 0
    finally:
        executor.shutdown()
        for node in (bridge, client):
            node.destroy_node()
        env.close()
        rclpy.try_shutdown(context=context)


STOCHLITE_TOPICS = {
    "/stochlite/joint_states": "sensor_msgs/msg/JointState",
    "/stochlite/imu": "sensor_msgs/msg/Imu",
    "/stochlite/torso_rpy": "geometry_msgs/msg/Vector3Stamped",
    "/stochlite/task_step": "mdemorl_msgs/msg/TaskStep",
    "/stochlite/joint_commands": "std_msgs/msg/Float64MultiArray",
    "/stochlite/gait_command": "std_msgs/msg/Float64MultiArray",
}


def test_a_short_stochlite_run_trains_through_the_graph_and_reports_shifts_against_tilt(tmp_path):
    """`mdemorl train robot:=stochlite` end to end: both epochs close, every StochLite topic is recorded with its
    type, D_ENV holds the policy's actions with the task steps' rewards and terminations, imagined transitions
    flow, and the report plots the X/Y shifts against pitch and roll."""
    from mcap.reader import make_reader
    from mdemorl_learner.report import read_recording
    from mdemorl_planner.transition_log import read_transition_log

    run_dir = tmp_path / "run"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID + 1), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    graph = subprocess.Popen([sys.executable, "-m", "stochlite_bringup.launcher", "train", "robot:=stochlite",
                              "epochs:=2", "steps_per_epoch:=300", f"run_dir:={run_dir}"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = graph.communicate(timeout=600)
    finally:
        if graph.poll() is None:
            os.killpg(graph.pid, signal.SIGKILL)
    assert graph.returncode == 0 and "the run is complete" in out, out[-4000:]
    with open(run_dir / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["env_steps"]) for r in rows] == [300, 600]
    assert int(rows[-1]["mpc_transitions"]) > 0  # the ensemble fitted after epoch 1 and the planner imagined
    with open(run_dir / "record.mcap", "rb") as f:
        summary = make_reader(f).get_summary()
    recorded = {channel.topic: summary.schemas[channel.schema_id].name for channel in summary.channels.values()}
    for topic, kind in STOCHLITE_TOPICS.items():
        assert recorded.get(topic) == kind, (topic, recorded.get(topic))
    counts = {summary.channels[c].topic: n for c, n in summary.statistics.channel_message_counts.items()}
    assert counts["/stochlite/gait_command"] >= 300 and counts["/stochlite/torso_rpy"] >= 300
    d_env = read_transition_log(run_dir / "d_env")  # the policy's 13-dim actions, TaskStep's reward and termination
    assert d_env["obs"].shape == (600, 14) and d_env["act"].shape == (600, 13)
    assert np.abs(d_env["act"]).max() <= 1.0 and d_env["act"].std() > 0.1
    recorded_steps = {np.asarray(m.observation, np.float32).tobytes(): (m.reward, m.terminated)
                      for _, m in read_recording(run_dir / "record.mcap")["/stochlite/task_step"]}
    matched = [(recorded_steps[obs.tobytes()], reward, terminated)
               for obs, reward, terminated in zip(d_env["next_obs"], d_env["reward"], d_env["terminated"])
               if obs.tobytes() in recorded_steps]  # the recorder thins task steps to 50 Hz of wall time
    assert len(matched) >= 100
    for (step_reward, step_terminated), reward, terminated in matched:
        assert reward == pytest.approx(step_reward, rel=1e-6, abs=1e-6) and bool(terminated) == step_terminated
    report = subprocess.run([sys.executable, "-m", "stochlite_bringup.launcher", "report", str(run_dir)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert report.returncode == 0, report.stderr
    for name in ("learning_curve", "joint_states", "shifts_vs_tilt"):
        assert (run_dir / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run_dir / "report" / "foot_path.png").exists()  # the leg's plot only
