"""agent_node and learner_node over real DDS: in-process with the real sim_bridge_node, and as processes."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from ament_index_python.packages import get_package_prefix
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mdemorl_msgs.msg import Snapshot, TrainingStatus, TransitionBatch
from mdemorl_planner.messages import (batch_to_msg, bytes_to_state_dict, msg_to_batch, msg_to_payload,
                                      snapshot_to_msg, state_dict_to_bytes)
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ
from mdemorl_planner.snapshots import policy_payload
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ENV_TOPIC, EVAL_RETURN_TOPIC, MARKER_QOS, MPC_TOPIC, POLICY_TOPIC,
                                            RETURNS_QOS, SAVE_CHECKPOINT_SERVICE, SNAPSHOT_QOS, STATUS_TOPIC,
                                            TRAIN_RETURN_TOPIC, TRANSITIONS_QOS)
from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.node_table import resolve_arguments, training_nodes
from stochlite_bringup.package_files import package_file
from stochlite_bringup.run_health import read_problems
from stochlite_bringup.sim_bridge_node import SimBridgeNode
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM, LegTask
from visualization_msgs.msg import Marker

from mdemorl_learner import agent_node, learner_node
from mdemorl_learner.agent_node import AgentNode
from mdemorl_learner.learner_node import LearnerNode
from mdemorl_learner.sac import SAC, SACConfig

DOMAIN_ID = 1 + os.getpid() % 100
TIMEOUT_S = 20.0


def wait_for(predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def overrides(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


class Probe(Node):
    """The rest of the graph as the tests see it: records what the nodes publish."""

    def __init__(self, context: Context) -> None:
        super().__init__("test_probe", context=context)
        self.batches: list[TransitionBatch] = []
        self.states: list[JointState] = []
        self.evals: list[float] = []
        self.trains: list[float] = []
        self.markers: dict[str, Marker] = {}
        self.policies: list[Snapshot] = []
        self.statuses: list[TrainingStatus] = []
        self.create_subscription(TransitionBatch, ENV_TOPIC, self.batches.append, TRANSITIONS_QOS)
        self.create_subscription(JointState, "/leg/joint_states", self.states.append, 1000)
        self.create_subscription(Float64, EVAL_RETURN_TOPIC, lambda m: self.evals.append(m.data), RETURNS_QOS)
        self.create_subscription(Float64, TRAIN_RETURN_TOPIC, lambda m: self.trains.append(m.data), RETURNS_QOS)
        for topic in ("/leg/foot_path", "/leg/foot_path_desired"):
            self.create_subscription(Marker, topic, lambda m, t=topic: self.markers.__setitem__(t, m), MARKER_QOS)
        self.create_subscription(Snapshot, POLICY_TOPIC, self.policies.append, SNAPSHOT_QOS)
        self.create_subscription(TrainingStatus, STATUS_TOPIC, self.statuses.append, 10)
        self.policy_pub = self.create_publisher(Snapshot, POLICY_TOPIC, SNAPSHOT_QOS)
        self.env_pub = self.create_publisher(TransitionBatch, ENV_TOPIC, TRANSITIONS_QOS)
        self.mpc_pub = self.create_publisher(TransitionBatch, MPC_TOPIC, TRANSITIONS_QOS)
        self.dynamics_pub = self.create_publisher(Snapshot, "/mdemorl/dynamics", SNAPSHOT_QOS)
        self.eval_pub = self.create_publisher(Float64, EVAL_RETURN_TOPIC, RETURNS_QOS)
        self.save = self.create_client(Trigger, SAVE_CHECKPOINT_SERVICE)


@pytest.fixture
def graph():
    """``graph(*node_factories)`` spins the nodes on their own executor thread; all torn down afterwards."""
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    executors, threads, nodes = [], [], []

    def start(*node_factories):
        made = [factory(context) for factory in node_factories]
        executor = SingleThreadedExecutor(context=context)
        for node in made:
            executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        executors.append(executor)
        threads.append(thread)
        nodes.extend(made)
        return made

    try:
        yield start
    finally:
        for executor in executors:
            executor.shutdown()
        for thread in threads:
            thread.join(5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def policy_snapshot(version: int, actor: SquashedGaussianActor, hidden: int = 16, layers: int = 1) -> Snapshot:
    critic = TwinQ(OBS_DIM, ACT_DIM, hidden, layers)
    payload = policy_payload(actor, critic, OBS_DIM, ACT_DIM, hidden, layers)
    return snapshot_to_msg("policy", version, state_dict_to_bytes(payload))


def expected_samples(states: list[JointState]) -> dict[bytes, tuple[np.ndarray, float]]:
    """obs bytes -> (obs, reward) for every joint state; episodes start at the bridge's at-rest reset states."""
    task, start_ns, table = LegTask(), 0, {}
    for state in states:
        ns = state.header.stamp.sec * 1_000_000_000 + state.header.stamp.nanosec
        if not any(state.velocity):
            start_ns = ns
        sample = task.sample(state.position, state.velocity, (ns - start_ns) / 1_000_000_000)
        table[sample.obs.tobytes()] = (sample.obs, sample.reward)
    return table


@pytest.mark.integration
def test_agent_drives_the_sim_bridge_publishes_the_task_and_swaps_policies_safely(graph, tmp_path):
    steps_per_epoch, episode_steps, epochs = 150, 100, 2
    bridge, probe = graph(lambda c: SimBridgeNode(context=c), Probe)
    (agent,) = graph(lambda c: AgentNode(context=c, parameter_overrides=overrides(
        epochs=epochs, steps_per_epoch=steps_per_epoch, episode_steps=episode_steps, start_steps=50,
        transitions_per_batch=25, seed=1, pacing="off", run_dir=str(tmp_path))))

    assert wait_for(lambda: probe.batches), "no TransitionBatch from the agent"
    corrupt = policy_snapshot(3, SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1))
    corrupt.checksum = "0" * 64
    probe.policy_pub.publish(corrupt)
    assert wait_for(lambda: agent.policy_errors == 1)
    nan_actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1)
    with torch.no_grad():
        nan_actor.net[0].weight.fill_(float("nan"))
    probe.policy_pub.publish(policy_snapshot(4, nan_actor))
    assert wait_for(lambda: agent.policy_errors == 2)
    assert agent.policy_version == 0
    probe.policy_pub.publish(policy_snapshot(7, SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1)))
    assert wait_for(lambda: agent.policy_version == 7)

    assert wait_for(lambda: agent.exit_code is not None), "the agent did not finish its epochs"
    assert agent.exit_code == 0 and not bridge.armed
    assert wait_for(lambda: len(probe.evals) == epochs and len(probe.markers) == 2)

    batches = [msg_to_batch(m) for m in probe.batches]
    assert all((m.source, m.obs_dim, m.act_dim) == ("env", OBS_DIM, ACT_DIM) for m in probe.batches)
    assert sum(len(b["reward"]) for b in batches) == epochs * steps_per_epoch == agent.core.env_steps
    versions = [m.policy_version for m in probe.batches]
    assert versions[0] == 0 and versions[-1] == 7 and versions == sorted(versions)
    expected = expected_samples(probe.states)
    for batch in batches:
        for obs, act, reward, next_obs in zip(batch["obs"], batch["act"], batch["reward"], batch["next_obs"]):
            assert obs.tobytes() in expected and next_obs.tobytes() in expected
            assert reward == np.float32(expected[next_obs.tobytes()][1])
            assert 0.0 <= reward <= 1.0 and np.all(np.abs(act) <= 1.0)
        assert not batch["terminated"].any()
    # training episodes: 100 and 50 steps per epoch (cut at the epoch boundary for the evaluation)
    assert len(probe.trains) == 2 * epochs and all(np.isfinite(probe.trains))
    assert all(0.0 < r <= episode_steps for r in probe.evals)
    foot = probe.markers["/leg/foot_path"]
    assert foot.type == Marker.LINE_STRIP and foot.header.frame_id == "base" and len(foot.points) == episode_steps
    assert len(probe.markers["/leg/foot_path_desired"].points) == episode_steps


def test_agent_parameters_are_typed_described_and_checked():
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        agent = AgentNode(context=context)
        defaults = config_defaults("agent.yaml", "agent")
        assert set(defaults) == set(agent_node.PARAMETERS)
        for descriptor in agent.describe_parameters(list(defaults)):
            assert descriptor.description and descriptor.read_only and descriptor.type
        agent.destroy_node()
        with pytest.raises(ValueError, match="parameter 'max_torque' is 50.0 but must be in .*agent.yaml"):
            AgentNode(context=context, parameter_overrides=overrides(max_torque=50.0))
    finally:
        rclpy.try_shutdown(context=context)


def random_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": rng.normal(size=(n, OBS_DIM)), "act": rng.uniform(-1, 1, (n, ACT_DIM)),
            "reward": rng.uniform(0, 1, n), "next_obs": rng.normal(size=(n, OBS_DIM)), "terminated": np.zeros(n)}


@pytest.mark.integration
def test_learner_trains_on_batches_publishes_policies_status_progress_and_checkpoints(graph, tmp_path):
    (learner,) = graph(lambda c: LearnerNode(context=c, parameter_overrides=overrides(
        epochs=2, steps_per_epoch=50, start_steps=50, batch_size=32, hidden_size=16, num_layers=1,
        policy_period_updates=20, status_period_s=0.2, run_dir=str(tmp_path))))
    (probe,) = graph(Probe)
    assert wait_for(lambda: probe.policies and probe.statuses)
    assert probe.policies[0].version == 0 and probe.statuses[-1].sac_updates == 0
    probe.eval_pub.publish(Float64(data=12.5))  # may overtake the epoch's transitions: waits for them
    assert wait_for(lambda: learner.pending_evaluations) and learner.epoch == 0

    bad = batch_to_msg(random_batch(5, 0), "env", 0)
    bad.reward[2] = float("nan")
    probe.env_pub.publish(bad)
    probe.env_pub.publish(batch_to_msg(random_batch(5, 0), "mpc", 0))  # wrong source for the env topic
    for i in range(4):
        probe.env_pub.publish(batch_to_msg(random_batch(25, i + 1), "env", 0))
    probe.mpc_pub.publish(batch_to_msg(random_batch(40, 9), "mpc", 0))
    probe.dynamics_pub.publish(snapshot_to_msg("dynamics", 1, state_dict_to_bytes({"val_loss": 0.25})))
    # transitions 50..100 earn one update each, as Trainer.env_step
    assert wait_for(lambda: learner.core.updates == 51 and learner.model_val_loss == 0.25)
    assert (learner.core.env_steps, learner.core.mpc_transitions, learner.rejected) == (100, 40, 2)
    assert wait_for(lambda: probe.policies[-1].version == 40)
    versions = [p.version for p in probe.policies]
    assert versions[0] == 0 and versions == sorted(set(versions)) and set(versions) <= {0, 20, 40}
    assert wait_for(lambda: probe.statuses[-1].sac_updates == 51)
    assert sorted(s.sac_updates for s in probe.statuses) == [s.sac_updates for s in probe.statuses]

    assert probe.save.wait_for_service(timeout_sec=TIMEOUT_S)
    future = probe.save.call_async(Trigger.Request())
    assert wait_for(future.done) and future.result().success
    checkpoint = torch.load(future.result().message, weights_only=True)
    restored = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden_size=16, num_layers=1, batch_size=32))
    restored.load_state_dict(checkpoint["sac"])
    assert restored.updates == 51 and checkpoint["env_steps"] == 100

    assert learner.epoch == 1
    probe.eval_pub.publish(Float64(data=30.0))
    assert wait_for(lambda: learner.exit_code == 0)
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert rows[0] == ("epoch,env_steps,eval_return,train_return,model_val_loss,mpc_transitions,sac_updates,"
                       "wall_s,q_loss,pi_loss,alpha,eval_forward_speed")
    assert [r.split(",")[:3] for r in rows[1:]] == [["1", "50", "12.5"], ["2", "100", "30.0"]]
    assert rows[2].split(",")[4:7] == ["0.25", "40", "51"]
    assert torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)["epoch"] == 2


@pytest.mark.integration
def test_a_learner_that_falls_behind_says_so_with_its_rate_dtype_and_device(graph, tmp_path):
    """1000 updates owed per real step cannot be kept: epoch 2 (all past start_steps) is a stall, reported in the
    log, /diagnostics (WARN, with the resolved compute) and stalls.log; epoch 1, partly before them, is not. The
    update ratio so far is behind too: WARN in /diagnostics and a line of health.log."""
    (learner,) = graph(lambda c: LearnerNode(context=c, parameter_overrides=overrides(
        epochs=3, steps_per_epoch=50, start_steps=40, batch_size=32, hidden_size=16, num_layers=1,
        updates_per_step=1000.0, status_period_s=0.2, run_dir=str(tmp_path), device="cpu")))
    (probe,) = graph(Probe)
    diagnostics: list[DiagnosticArray] = []
    probe.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, diagnostics.append, DIAGNOSTICS_QOS)
    assert wait_for(lambda: probe.policies)
    probe.env_pub.publish(batch_to_msg(random_batch(50, 1), "env", 0))
    assert wait_for(lambda: learner.core.env_steps == 50)
    assert learner.stall == "" and not (tmp_path / "stalls.log").exists()
    time.sleep(0.5)
    probe.env_pub.publish(batch_to_msg(random_batch(50, 2), "env", 0))
    assert wait_for(lambda: learner.stall)
    assert learner.stall.startswith("epoch 2: ") and "against 1000 configured" in learner.stall
    assert f"SAC {learner.compute.sac_dtype} on cpu ({torch.backends.cpu.get_cpu_capability()})" in learner.stall
    assert (tmp_path / "stalls.log").read_text() == f"learner: {learner.stall}\n"

    def stalled_status():
        mine = [s for d in diagnostics for s in d.status if s.name == "learner"]
        return mine and "learning stalled in epoch 2" in mine[-1].message and mine[-1]
    assert wait_for(stalled_status)
    status = stalled_status()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN
    assert values["device"] == "cpu" and values["sac_dtype"] in ("float32", "bfloat16")
    assert values["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert float(values["float32_gflops"]) > 0 and float(values["bfloat16_gflops"]) > 0

    assert wait_for(lambda: read_problems(tmp_path))
    records = read_problems(tmp_path)
    assert {(r.node, r.kind) for r in records} == {("learner", "update ratio behind")}
    assert "SAC updates per real step against 1000 configured" in records[0].detail

    def ratio_status():
        return [s for d in diagnostics for s in d.status if s.name == "learner" and "update ratio behind: " in s.message]
    assert wait_for(ratio_status)
    assert all(s.level == DiagnosticStatus.WARN for s in ratio_status())


def node_process(executable: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start an installed console script in its own session; its stderr goes to a file."""
    command = [os.path.join(get_package_prefix("mdemorl_learner"), "lib", "mdemorl_learner", executable),
               "--ros-args", "--params-file", str(package_file("config", f"{executable[:-5]}.yaml")), *args]
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    log = tmp_path / f"{executable}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)
    return proc, log


@pytest.mark.integration
def test_node_processes_exit_0_on_sigint_and_sigterm_without_traceback(tmp_path):
    """The learner gets SIGINT, the agent (still waiting for a robot) SIGTERM: both exit 0 within 5 s."""
    learner, learner_log = node_process("learner_node", tmp_path, "-p", f"run_dir:={tmp_path}")
    agent, agent_log = node_process("agent_node", tmp_path, "-r", "__ns:=/no_robot")
    procs = {signal.SIGINT: (learner, learner_log, "learning from"),
             signal.SIGTERM: (agent, agent_log, "waiting for /no_robot/leg/enable")}
    try:
        for sig, (proc, log, ready) in procs.items():
            assert wait_for(lambda: ready in log.read_text()), log.read_text()
        assert "(90% of each minibatch from D_ENV)" in learner_log.read_text()  # real_ratio -1: the leg's 0.9
        for sig, (proc, log, _) in procs.items():
            proc.send_signal(sig)
        for sig, (proc, log, _) in procs.items():
            assert proc.wait(timeout=5.0) == 0, log.read_text()
            assert "Traceback" not in log.read_text()
        assert "stopping: interrupted" in agent_log.read_text()
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.integration
def test_invalid_parameter_exits_nonzero_naming_it(tmp_path):
    proc, log = node_process("learner_node", tmp_path, "-p", f"run_dir:={tmp_path}", "-p", "real_ratio:=1.5")
    try:
        assert proc.wait(timeout=TIMEOUT_S) == 1
        text = log.read_text()
        assert "parameter 'real_ratio' is 1.5 but must be in [0, 1]" in text and "learner.yaml" in text, text
        assert "Traceback" not in text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_learner_parameters_match_the_yaml():
    assert set(config_defaults("learner.yaml", "learner")) == set(learner_node.PARAMETERS)


@pytest.mark.integration
def test_agent_paces_itself_to_the_policy_snapshots_and_saves_the_foot_path(graph, tmp_path):
    """max_policy_lag 250, start_steps 20: the lockstep sim stops where (env_steps - 20) - version > 250."""
    (bridge,) = graph(lambda c: SimBridgeNode(context=c))
    (agent,) = graph(lambda c: AgentNode(context=c, parameter_overrides=overrides(
        epochs=1, steps_per_epoch=400, episode_steps=200, start_steps=20, transitions_per_batch=25, seed=2,
        max_policy_lag=250, policy_period_updates=250, run_dir=str(tmp_path))))
    # no learner yet (a node that publishes policies and takes transitions): the agent does not start
    assert wait_for(lambda: agent._enable.service_is_ready() and agent._reset.service_is_ready())
    time.sleep(1.0)
    assert agent._phase is agent_node.Phase.WAITING and not bridge.armed and agent.core.env_steps == 0
    (probe,) = graph(Probe)  # it plays the learner

    def held_still(env_steps: int) -> None:
        """The agent holds at exactly ``env_steps``; no command goes out, so the sim clock stands still."""
        # right after a new snapshot the old hold still shows until the executor resumes: wait for the new one
        assert wait_for(lambda: agent.core.holding and agent.core.env_steps == env_steps), \
            f"no hold at {env_steps}; holding={agent.core.holding} at {agent.core.env_steps} env steps"
        time.sleep(0.3)  # the held state itself may still be on its way to the probe
        states, stamp = len(probe.states), probe.states[-1].header.stamp
        time.sleep(1.0)
        assert agent.core.holding and agent.core.env_steps == env_steps
        assert len(probe.states) == states and probe.states[-1].header.stamp == stamp
        # everything so far reached the learner's topic, so its update credit covers these steps
        assert wait_for(lambda: sum(len(m.reward) for m in probe.batches) == env_steps)

    held_still(20 + 250 + 1)  # no snapshot beyond v0 (none at all here): random actions up to the bound
    assert not probe.evals
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1)
    probe.policy_pub.publish(policy_snapshot(10, actor))
    assert wait_for(lambda: agent.policy_version == 10)
    held_still(20 + 10 + 250 + 1)  # resumed with v10 and ran to its bound
    assert probe.batches[-1].policy_version == 10

    # v129 lets training reach the epoch's end (400 steps); the evaluation then waits for a policy
    # within the bound: (400 - 20) - 129 = 251 > 250
    probe.policy_pub.publish(policy_snapshot(129, actor))
    assert wait_for(lambda: agent.core.holding and agent.core.evaluating), agent.core.env_steps
    held_still(400)
    assert not probe.evals
    probe.policy_pub.publish(policy_snapshot(130, actor))
    assert wait_for(lambda: agent.exit_code is not None), "the evaluation did not run"
    assert agent.exit_code == 0 and agent.core.env_steps == 400
    assert wait_for(lambda: len(probe.evals) == 1 and len(probe.markers) == 2)

    with np.load(tmp_path / "foot_path.npz") as data:
        assert data["foot"].shape == data["foot_desired"].shape == (200, 2)
        assert float(data["dt"]) == pytest.approx(0.002)  # one 2 ms physics step per command
        foot, desired = data["foot"], data["foot_desired"]
    np.testing.assert_array_equal([[p.x, p.z] for p in probe.markers["/leg/foot_path"].points], foot)
    task = LegTask()  # the desired path is the task's, 2 ms apart from the first step on
    np.testing.assert_allclose(desired, [task.sample([0.0, 0.0], [0.0, 0.0], (i + 1) * 0.002).desired_foot_position
                                         for i in range(200)], atol=1e-12)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.integration
def test_an_agent_that_waits_too_long_for_a_policy_says_so_once_per_hold(graph, tmp_path):
    """A hold past policy_wait_warning_s: WARN in /diagnostics with the learner's update rate and compute (from
    its snapshots), one stalls.log line per hold."""
    graph(lambda c: SimBridgeNode(context=c))
    (agent,) = graph(lambda c: AgentNode(context=c, parameter_overrides=overrides(
        epochs=1, steps_per_epoch=400, episode_steps=200, start_steps=20, transitions_per_batch=25, seed=2,
        max_policy_lag=250, policy_period_updates=250, run_dir=str(tmp_path), policy_wait_warning_s=1.0,
        diagnostics_period_s=0.2)))
    (probe,) = graph(Probe)  # it plays the learner
    diagnostics: list[DiagnosticArray] = []
    probe.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, diagnostics.append, DIAGNOSTICS_QOS)
    stalls = tmp_path / "stalls.log"

    def agent_status():
        mine = [s for d in diagnostics for s in d.status if s.name == "agent"]
        return mine[-1] if mine else None

    assert wait_for(lambda: agent.core.holding and agent.core.env_steps == 20 + 250 + 1)
    assert agent_status() is None or "learning stalled" not in agent_status().message  # held less than 1 s
    assert wait_for(lambda: stalls.is_file())  # the next diagnostics message carries the warning
    assert wait_for(lambda: agent_status() is not None and "learning stalled: waiting" in agent_status().message)
    status = agent_status()
    assert status.level == DiagnosticStatus.WARN
    assert "newer than v0" in status.message and "(unknown)" in status.message  # no snapshot has told yet
    time.sleep(1.0)  # several diagnostics periods of the same hold: still one line
    assert len(stalls.read_text().splitlines()) == 1 and stalls.read_text().startswith("agent: learning stalled")

    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1)
    for version in (5, 10):  # the learner's compute and update rate come with its snapshots
        msg = policy_snapshot(version, actor)
        payload = bytes_to_state_dict(msg_to_payload(msg))
        payload["compute"] = "SAC bfloat16 on cpu (AVX2)"
        probe.policy_pub.publish(snapshot_to_msg("policy", version, state_dict_to_bytes(payload)))
        assert wait_for(lambda: agent.policy_version == version)
        time.sleep(0.5)
    assert wait_for(lambda: agent.core.holding and agent.core.env_steps == 20 + 10 + 250 + 1)
    assert wait_for(lambda: len(stalls.read_text().splitlines()) == 2)
    second = stalls.read_text().splitlines()[1]
    assert "newer than v10" in second and "(SAC bfloat16 on cpu (AVX2))" in second
    rate = float(second.split("the learner made ")[1].split(" SAC updates/s")[0])
    assert 0 < rate < 10 / 0.5  # 5 updates between two snapshots at least 0.5 s apart


def test_agent_pacing_bound_must_cover_a_snapshot_period():
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        with pytest.raises(ValueError, match=r"parameter 'max_policy_lag' is 200 but must be >= policy_period_updates "
                                             r"\(250\) while pacing is step"):
            AgentNode(context=context, parameter_overrides=overrides(max_policy_lag=200))
        AgentNode(context=context, parameter_overrides=overrides(max_policy_lag=200, pacing="off")).destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_agent_and_learner_configs_agree_on_what_pacing_relies_on():
    """The agent's copies of the learner's values, and the learner's credit rule pacing needs."""
    agent, learner = config_defaults("agent.yaml", "agent"), config_defaults("learner.yaml", "learner")
    assert agent["policy_period_updates"] == learner["policy_period_updates"]
    assert agent["start_steps"] == learner["start_steps"]
    assert agent["max_policy_lag"] >= learner["policy_period_updates"]
    # about one update per env step from start_steps on: the learner's version reaches env_steps - start_steps
    assert learner["updates_per_step"] >= 1.0 and learner["batch_size"] <= learner["start_steps"]


@pytest.mark.integration
def test_paced_agent_and_real_learner_finish_every_epoch_with_actions_never_past_the_bound(graph, tmp_path):
    """sim bridge + agent + learner: holds are released by the learner's own snapshots until the run ends."""
    start_steps, period, lag, epochs, steps_per_epoch = 40, 20, 25, 2, 150
    bridge, probe = graph(lambda c: SimBridgeNode(context=c), Probe)
    (learner,) = graph(lambda c: LearnerNode(context=c, parameter_overrides=overrides(
        epochs=epochs, steps_per_epoch=steps_per_epoch, start_steps=start_steps, batch_size=32, hidden_size=16,
        num_layers=1, policy_period_updates=period, run_dir=str(tmp_path))))
    (agent,) = graph(lambda c: AgentNode(context=c, parameter_overrides=overrides(
        epochs=epochs, steps_per_epoch=steps_per_epoch, episode_steps=100, start_steps=start_steps,
        transitions_per_batch=25, seed=3, max_policy_lag=lag, policy_period_updates=period,
        run_dir=str(tmp_path))))
    assert wait_for(lambda: agent.exit_code is not None and learner.exit_code is not None, 3 * TIMEOUT_S), (
        f"stalled: {agent.core.env_steps} env steps, holding {agent.core.holding}, policy v{agent.policy_version}, "
        f"{learner.core.updates} updates")
    assert agent.exit_code == 0 and learner.exit_code == 0
    total = epochs * steps_per_epoch
    assert agent.core.env_steps == learner.core.env_steps == total
    assert wait_for(lambda: learner.core.updates == total - start_steps + 1)  # Trainer.env_step's count
    # the first hold is certain: at 66 env steps the lag is 26 and the learner has seen only 50 transitions
    # (one batch), 11 updates, so no snapshot beyond v0; every hold follows an action at exactly the bound
    assert agent._holds >= 1
    # the transition with index i was chosen at i env steps, by the policy its batch names
    index, lags = 0, []
    for msg in probe.batches:
        for _ in range(len(msg.reward)):
            if index >= start_steps:
                lags.append(index - start_steps - msg.policy_version)
            index += 1
    assert index == total and max(lags) == lag
    with np.load(tmp_path / "foot_path.npz") as data:
        assert data["foot"].shape == (100, 2)


def test_pacing_is_by_step_in_simulation_and_by_episode_on_hardware():
    """sim:=none drives the real leg, which can wait for the learner between episodes only; its driver runs the
    policy (no agent node) with the same runner settings; pacing:=step there is refused, naming the fix."""
    hardware = {n.name: n for n in training_nodes(resolve_arguments({"sim": "none", "port": "/dev/ttyACM0"}))}
    assert "agent" not in hardware and hardware["hw_interface"].parameters["policy_runner"] is True
    assert hardware["hw_interface"].parameters["runner.pacing"] == hardware["learner"].parameters["pacing"] == "episode"
    simulated = {n.name: n for n in training_nodes(resolve_arguments({}))}
    assert simulated["agent"].parameters["pacing"] == simulated["learner"].parameters["pacing"] == "step"
    off = {n.name: n for n in training_nodes(resolve_arguments({"pacing": "off"}))}
    assert off["agent"].parameters["pacing"] == "off"
    with pytest.raises(ValueError, match="a robot cannot pause between two commands: use pacing:=episode"):
        resolve_arguments({"sim": "none", "port": "/dev/ttyACM0", "pacing": "step"})
