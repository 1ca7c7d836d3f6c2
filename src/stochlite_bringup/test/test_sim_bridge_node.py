"""sim_bridge_node over real DDS: in-process next to a test client, and as a separate process.

The leg in PyBullet, and a MuJoCo task (Hopper-v5) checked step for step against gymnasium's own env.
"""

import math
import os
import signal
import subprocess
import sys
import time

import gymnasium
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mdemorl_msgs.msg import TaskStep
from rclpy.context import Context
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.package_files import package_file
from stochlite_bringup.sim_bridge_node import PARAMETERS, SimBridgeNode, start_joint_angles
from stochlite_bringup.tasks.foot_path import desired_foot_position
from stochlite_bringup.tasks.leg_kinematics import forward_kinematics

pytestmark = pytest.mark.integration

DOMAIN_ID = 50 + os.getpid() % 50  # unique per test run; FastDDS default ports allow 0..101
STEP_NS = 2_000_000  # 500 Hz (config/sim_bridge.yaml)
MAX_TORQUE_NM = 10.0  # config/sim_bridge.yaml
TIMEOUT_S = 10.0


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class LegClient(Node):
    """The agent's side of the bridge: commands out, joint states and clock in, both services."""

    def __init__(self, context: Context, prefix: str = "/leg") -> None:
        super().__init__("test_leg_client", context=context)
        self.states: list[JointState] = []
        self.clocks: list[Clock] = []
        self.commands = self.create_publisher(Float64MultiArray, f"{prefix}/effort_commands", 10)
        self.create_subscription(JointState, f"{prefix}/joint_states", self.states.append, 10)
        self.create_subscription(Clock, "/clock", self.clocks.append, 10)
        self.enable = self.create_client(SetBool, f"{prefix}/enable")
        self.reset = self.create_client(Trigger, f"{prefix}/reset")

    def send(self, data) -> None:
        self.commands.publish(Float64MultiArray(data=[float(x) for x in data]))


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
    assert future.done(), f"{client.srv_name} did not answer"
    return future.result()


def settle(executor, client: LegClient) -> int:
    """Step once (re-sending until the graph is matched), empty the inboxes, return the sim time [ns]."""
    deadline = time.monotonic() + TIMEOUT_S
    while not any(stamp_ns(s.header.stamp) > 0 for s in client.states):
        assert time.monotonic() < deadline, "no joint state after an effort command"
        client.send([0.0, 0.0])
        spin_until(executor, lambda: any(stamp_ns(s.header.stamp) > 0 for s in client.states), 1.0)
    now = stamp_ns(client.states[-1].header.stamp)
    assert spin_until(executor, lambda: client.clocks and stamp_ns(client.clocks[-1].clock) == now)
    client.states.clear()
    client.clocks.clear()
    return now


def step(executor, client: LegClient, data) -> JointState:
    """Send one command and return the joint state it produced."""
    count = len(client.states)
    client.send(data)
    assert spin_until(executor, lambda: len(client.states) > count), f"no joint state after command {data}"
    return client.states[-1]


@pytest.fixture
def context():
    ros_context = Context()
    rclpy.init(context=ros_context, domain_id=DOMAIN_ID)
    try:
        yield ros_context
    finally:
        rclpy.try_shutdown(context=ros_context)


@pytest.fixture
def make_graph(context):
    """``make_graph(**parameter_overrides) -> (bridge, client, executor)``, all destroyed afterwards."""
    nodes = []
    executor = SingleThreadedExecutor(context=context)

    def make(**overrides):
        bridge = SimBridgeNode(
            context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
        client = LegClient(context)
        nodes.extend((bridge, client))
        executor.add_node(bridge)
        executor.add_node(client)
        return bridge, client, executor

    try:
        yield make
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()


def test_lockstep_advances_one_step_per_command_and_publishes_state_and_clock(make_graph):
    bridge, client, executor = make_graph()
    assert call(executor, client.enable, SetBool.Request(data=True)).success
    t0 = settle(executor, client)
    commands = [[1.0, -0.5]] * 19 + [[50.0, -50.0]]
    for command in commands:
        step(executor, client, command)
    assert spin_until(executor, lambda: len(client.clocks) >= len(commands))
    executor.spin_once(timeout_sec=0.05)  # nothing else may arrive
    assert len(client.states) == len(client.clocks) == len(commands)
    stamps = [stamp_ns(s.header.stamp) for s in client.states]
    assert stamps == [t0 + k * STEP_NS for k in range(1, len(commands) + 1)]
    assert [stamp_ns(c.clock) for c in client.clocks] == stamps
    assert all(list(s.name) == ["hip", "knee"] for s in client.states)
    np.testing.assert_array_equal([s.effort for s in client.states[:-1]], [[1.0, -0.5]] * 19)
    np.testing.assert_array_equal(client.states[-1].effort, [MAX_TORQUE_NM, -MAX_TORQUE_NM])  # clamped
    assert client.states[-1].position[0] != client.states[0].position[0]
    assert bridge.rejected_commands == 0


def test_disarmed_bridge_applies_zero_torque_and_still_steps(make_graph):
    _, client, executor = make_graph()
    t0 = settle(executor, client)
    disarmed = step(executor, client, [3.0, 3.0])
    assert list(disarmed.effort) == [0.0, 0.0] and stamp_ns(disarmed.header.stamp) == t0 + STEP_NS
    armed = call(executor, client.enable, SetBool.Request(data=True))
    assert armed.success and armed.message.startswith("armed")
    assert list(step(executor, client, [3.0, 3.0]).effort) == [3.0, 3.0]
    assert call(executor, client.enable, SetBool.Request(data=False)).message.startswith("disarmed")
    assert list(step(executor, client, [3.0, 3.0]).effort) == [0.0, 0.0]


def test_malformed_commands_are_rejected_counted_and_step_with_zero_torque(make_graph):
    bridge, client, executor = make_graph()
    call(executor, client.enable, SetBool.Request(data=True))
    t0 = settle(executor, client)
    for k, bad in enumerate(([math.nan, 1.0], [1.0, 2.0, 3.0], [math.inf, 0.0], []), start=1):
        state = step(executor, client, bad)
        assert list(state.effort) == [0.0, 0.0] and stamp_ns(state.header.stamp) == t0 + k * STEP_NS
        assert bridge.rejected_commands == k
    assert list(step(executor, client, [2.0, 1.0]).effort) == [2.0, 1.0]
    assert bridge.rejected_commands == 4


def test_reset_puts_the_joints_at_rest_at_the_start_of_the_path(make_graph):
    _, client, executor = make_graph()
    call(executor, client.enable, SetBool.Request(data=True))
    settle(executor, client)
    for _ in range(20):
        moved = step(executor, client, [5.0, 5.0])
    assert np.abs(moved.velocity).max() > 0.1
    response = call(executor, client.reset, Trigger.Request())
    assert response.success and "start of the desired foot path" in response.message
    assert spin_until(executor, lambda: len(client.states) == 21)
    state = client.states[-1]
    np.testing.assert_allclose(state.position, start_joint_angles(), atol=1e-9)
    np.testing.assert_allclose(forward_kinematics(state.position), desired_foot_position(0.0), atol=1e-9)
    assert list(state.velocity) == [0.0, 0.0] and list(state.effort) == [0.0, 0.0]
    assert state.header.stamp == moved.header.stamp  # reset does not advance the clock


def test_timer_mode_steps_at_the_physics_rate_holding_the_latest_command(make_graph):
    _, client, executor = make_graph(lockstep=False)
    call(executor, client.enable, SetBool.Request(data=True))
    assert spin_until(executor, lambda: client.commands.get_subscription_count() > 0)
    client.send([1.0, -1.0])
    assert spin_until(executor, lambda: sum(list(s.effort) == [1.0, -1.0] for s in client.states) >= 20)
    stamps = np.array([stamp_ns(s.header.stamp) for s in client.states])
    assert np.all(np.diff(stamps) % STEP_NS == 0) and np.all(np.diff(stamps) > 0)
    held = [s for s in client.states if list(s.effort) == [1.0, -1.0]]
    assert np.all(np.diff([stamp_ns(s.header.stamp) for s in held]) == STEP_NS)  # no gap once held


def test_parameters_are_typed_described_read_only_and_come_from_the_yaml(make_graph, context):
    bridge, _, _ = make_graph()
    defaults = config_defaults("sim_bridge.yaml", "sim_bridge")
    assert set(defaults) == set(PARAMETERS)
    for name, descriptor in zip(PARAMETERS, bridge.describe_parameters(list(PARAMETERS))):
        assert descriptor.description and descriptor.read_only
        assert descriptor.type == PARAMETERS[name].descriptor().type
        assert bridge.get_parameter(name).value == defaults[name]
    assert defaults["physics_rate_hz"] * STEP_NS == 1_000_000_000 and defaults["max_torque"] == MAX_TORQUE_NM
    with pytest.raises(ValueError, match="parameter 'robot' is 'dog' but must be one of leg, stochlite, HalfCheetah-v5, .*sim_bridge.yaml"):
        SimBridgeNode(context=context, parameter_overrides=[Parameter("robot", value="dog")])
    with pytest.raises(InvalidParameterValueException, match="max_torque out of range"):
        SimBridgeNode(context=context, parameter_overrides=[Parameter("max_torque", value=40.0)])


def test_separate_process_publishes_and_exits_cleanly_on_sigint_and_sigterm(context):
    """Two bridges in their own namespaces and process groups; one gets SIGINT, the other SIGTERM."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    params_file = str(package_file("config", "sim_bridge.yaml"))
    procs, clients = {}, {}
    executor = SingleThreadedExecutor(context=context)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            command = [sys.executable, "-m", "stochlite_bringup.sim_bridge_node", "--ros-args"]
            command += ["-r", f"__ns:=/{sig.name.lower()}", "--params-file", params_file]
            procs[sig] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
            )
            clients[sig] = LegClient(context, prefix=f"/{sig.name.lower()}/leg")
            executor.add_node(clients[sig])
        for sig, client in clients.items():
            settle(executor, client)  # asserts a joint state after a command
            state = step(executor, client, [0.0, 0.0])
            assert list(state.name) == ["hip", "knee"] and stamp_ns(state.header.stamp) > 0
        for sig, proc in procs.items():
            proc.send_signal(sig)
        for sig, proc in procs.items():
            _, stderr = proc.communicate(timeout=5.0)
            assert proc.returncode == 0, f"{sig.name}: exit code {proc.returncode}, stderr:\n{stderr}"
            assert "Traceback" not in stderr, stderr
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        executor.shutdown()
        for client in clients.values():
            client.destroy_node()


class TaskClient(LegClient):
    """The agent's side of a MuJoCo task: also task steps and the bridge's diagnostics."""

    def __init__(self, context: Context, prefix: str) -> None:
        super().__init__(context, prefix)
        self.task_steps: list[TaskStep] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.create_subscription(TaskStep, f"{prefix}/task_step", self.task_steps.append, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)


def test_mujoco_task_steps_exactly_as_gymnasium_and_reports_its_observation_reward_and_termination(context):
    seed = 3
    bridge = SimBridgeNode(context=context, parameter_overrides=[Parameter("robot", value="Hopper-v5"),
                                                                 Parameter("seed", value=seed)])
    client = TaskClient(context, "/hopper")
    executor = SingleThreadedExecutor(context=context)
    reference = gymnasium.make("Hopper-v5", max_episode_steps=None, disable_env_checker=True).unwrapped
    try:
        for node in (bridge, client):
            executor.add_node(node)
        assert call(executor, client.enable, SetBool.Request(data=True)).success
        assert call(executor, client.reset, Trigger.Request()).success
        assert spin_until(executor, lambda: client.task_steps and client.task_steps[-1].step == 0)
        reference.reset(seed=seed)  # the bridge's own first reset, at start-up, takes the seed
        obs, _ = reference.reset()  # later ones continue its random stream
        np.testing.assert_allclose(client.task_steps[-1].observation, obs, rtol=1e-6)
        t0 = stamp_ns(client.task_steps[-1].header.stamp)
        assert spin_until(executor, lambda: client.commands.get_subscription_count() > 0)
        rng = np.random.default_rng(0)
        terminated, k = False, 0
        while not terminated:
            action = rng.uniform(-1.5, 1.5, 3)  # beyond the box [-1, 1]: the bridge clamps
            count = len(client.task_steps)
            client.send(action)
            assert spin_until(executor, lambda: len(client.task_steps) > count), f"no task step after {action}"
            obs, reward, terminated, _, _ = reference.step(np.clip(action, -1.0, 1.0))
            k += 1
            got = client.task_steps[-1]
            assert got.step == k and got.terminated == terminated
            np.testing.assert_allclose(got.observation, obs, rtol=1e-5, atol=1e-6)
            assert got.reward == pytest.approx(reward, rel=1e-6)
            assert stamp_ns(got.header.stamp) == t0 + k * round(reference.dt * 1e9)
            assert k < 500, "Hopper did not fall under random actions"
        state = client.states[-1]
        assert list(state.name) == ["rootx", "rootz", "rooty", "thigh_joint", "leg_joint", "foot_joint"]
        np.testing.assert_allclose(state.position, reference.data.qpos, rtol=1e-6)
        bad = len(client.task_steps)
        client.send([math.nan, 0.0, 0.0])
        assert spin_until(executor, lambda: len(client.task_steps) > bad)
        assert bridge.rejected_commands == 1 and np.allclose(client.states[-1].effort, 0.0)
        assert spin_until(executor, lambda: any(s.name == "sim_bridge" and s.level == DiagnosticStatus.WARN for d in client.diagnostics
                                                for s in d.status), 3.0)  # WARN: a command was rejected
        values = {v.key: v.value for v in client.diagnostics[-1].status[0].values}
        assert values["rejected_commands"] == "1" and values["resets"] == "1" and values["armed"] == "True"
    finally:
        executor.shutdown()
        for node in (bridge, client):
            node.destroy_node()
        reference.close()
