"""model_trainer and planner nodes over real DDS: in-process with a probe node, and as a process."""
import os

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from ament_index_python.packages import get_package_prefix  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from mdemorl_msgs.msg import Snapshot, TransitionBatch  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mdemorl_planner.ensemble import ProbabilisticEnsemble  # noqa: E402
from mdemorl_planner.messages import (batch_to_msg, bytes_to_state_dict, msg_to_batch, msg_to_payload,  # noqa: E402
                                      snapshot_to_msg, state_dict_to_bytes)
from mdemorl_planner.model_trainer_node import ModelTrainerNode  # noqa: E402
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ  # noqa: E402
from mdemorl_planner.planner_node import PlannerNode, reward_fn, termination_fn  # noqa: E402
from mdemorl_planner.snapshots import dynamics_payload, load_dynamics, policy_payload  # noqa: E402
from stochlite_bringup.graph_topics import (DIAGNOSTICS_TOPIC, DYNAMICS_TOPIC, ENV_TOPIC, MPC_TOPIC,  # noqa: E402
                                            POLICY_TOPIC, SNAPSHOT_QOS, TRANSITIONS_QOS)

torch.set_num_threads(1)
OBS_DIM, ACT_DIM = 3, 2
CONFIG_DIR = Path(__file__).resolve().parents[2] / "stochlite_bringup" / "config"
A = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
B = np.array([[0.5, 0.0], [0.0, 0.5], [0.3, -0.3]])
C = np.array([1.0, -0.5, 0.25])


def linear_system(n, rng):
    """Transitions of x' = A x + B u, r = C x, with random x and u."""
    obs = rng.normal(size=(n, OBS_DIM))
    act = rng.uniform(-1, 1, (n, ACT_DIM))
    return {"obs": obs, "act": act, "reward": obs @ C, "next_obs": obs @ A.T + act @ B.T,
            "terminated": np.zeros(n, dtype=bool)}


@pytest.fixture(scope="module", autouse=True)
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


class Probe:
    """The test's node: publishes the node's inputs, records its outputs."""

    def __init__(self):
        self.node = rclpy.create_node("probe")
        self.env = self.node.create_publisher(TransitionBatch, ENV_TOPIC, TRANSITIONS_QOS)
        self.policy = self.node.create_publisher(Snapshot, POLICY_TOPIC, SNAPSHOT_QOS)
        self.dynamics = self.node.create_publisher(Snapshot, DYNAMICS_TOPIC, SNAPSHOT_QOS)
        self.mpc_msgs, self.dynamics_msgs, self.diagnostics = [], [], {}
        self.node.create_subscription(TransitionBatch, MPC_TOPIC, self.mpc_msgs.append, TRANSITIONS_QOS)
        self.node.create_subscription(Snapshot, DYNAMICS_TOPIC, self.dynamics_msgs.append, SNAPSHOT_QOS)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}


@pytest.fixture
def graph():
    """(executor, probe, add_node): the probe and the nodes under test spin in one executor."""
    executor = SingleThreadedExecutor()
    probe = Probe()
    nodes = [probe.node]
    executor.add_node(probe.node)

    def add(node):
        nodes.append(node)
        executor.add_node(node)
        return node

    yield executor, probe, add
    for node in nodes:
        executor.remove_node(node)
        node.destroy_node()
    executor.shutdown()


def spin_until(executor, condition, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        executor.spin_once(timeout_sec=0.05)


def overrides(**values):
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.mark.integration
def test_model_trainer_fits_the_linear_system_and_publishes_rising_versions(graph):
    executor, probe, add = graph
    trainer = add(ModelTrainerNode(parameter_overrides=overrides(
        train_every_steps=600, min_steps=600, num_members=3, num_elites=2, hidden_size=32, num_layers=2,
        learning_rate=0.01, max_epochs=40, torch_threads=1, diagnostics_period=0.2, compute_dtype="bfloat16")))
    rng = np.random.default_rng(0)
    spin_until(executor, lambda: probe.env.get_subscription_count() > 0)
    bad = batch_to_msg(linear_system(10, rng), "env", 0)
    bad.count = 11  # arrays no longer match the count
    probe.env.publish(bad)
    probe.env.publish(batch_to_msg(linear_system(10, rng), "mpc", 0))  # wrong source for D_ENV
    for fits in (1, 2):  # data arriving faster than fits would coalesce into fewer, larger fits
        for _ in range(2):
            probe.env.publish(batch_to_msg(linear_system(300, rng), "env", 0))
        spin_until(executor, lambda: len(probe.dynamics_msgs) == fits, timeout_s=30.0)
    assert [m.version for m in probe.dynamics_msgs] == [1, 2]
    assert (trainer.received, trainer.rejected, trainer.fits) == (1200, 2, 2)
    state = bytes_to_state_dict(msg_to_payload(probe.dynamics_msgs[-1]))
    model = load_dynamics(state)
    assert (state["num_members"], state["num_elites"], state["hidden_size"]) == (3, 2, 32)
    test = linear_system(500, rng)
    next_obs, reward = model.step(torch.as_tensor(test["obs"], dtype=torch.float32),
                                  torch.as_tensor(test["act"], dtype=torch.float32), deterministic=True)
    delta = test["next_obs"] - test["obs"]
    assert np.mean((next_obs.numpy() - test["next_obs"]) ** 2) < 0.05 * np.var(delta)
    assert np.mean((reward.numpy() - test["reward"]) ** 2) < 0.05 * np.var(test["reward"])
    spin_until(executor, lambda: probe.diagnostics.get("model_trainer", {}).get("fits") == "2")
    diagnostics = probe.diagnostics["model_trainer"]
    assert diagnostics["transitions"] == "1200" and diagnostics["rejected_batches"] == "2"
    assert float(diagnostics["last_fit_seconds"]) > 0 and float(diagnostics["last_val_loss"]) < 0.1


def _policy_snapshot(version, seed):
    torch.manual_seed(seed)
    actor, critic = SquashedGaussianActor(OBS_DIM, ACT_DIM, 16, 1), TwinQ(OBS_DIM, ACT_DIM, 16, 1)
    return snapshot_to_msg("policy", version, state_dict_to_bytes(policy_payload(actor, critic, OBS_DIM, ACT_DIM,
                                                                                 16, 1)))


def _dynamics_snapshot(version, seed, obs_dim=OBS_DIM):
    model = ProbabilisticEnsemble(obs_dim, ACT_DIM, num_members=3, num_elites=2, hidden_size=16, num_layers=2,
                                  seed=seed)
    return snapshot_to_msg("dynamics", version, state_dict_to_bytes(dynamics_payload(model, 16, 2, 0.1)))


BATCH, HORIZON, CHUNK = 30, 4, 50


@pytest.mark.integration
def test_planner_imagines_per_dynamics_snapshot_with_the_latest_policy(graph):
    executor, probe, add = graph
    planner = add(PlannerNode(parameter_overrides=overrides(
        horizon_start=HORIZON, horizon_end=HORIZON, rollout_batch_start=BATCH, rollout_batch_max=BATCH,
        num_samples=16, publish_chunk=CHUNK, torch_threads=1, diagnostics_period=0.1,
        imagined_reward="model")))  # a linear system, not the leg: its rewards come from the model
    rng = np.random.default_rng(1)
    spin_until(executor, lambda: probe.env.get_subscription_count() > 0)
    probe.env.publish(batch_to_msg(linear_system(200, rng), "env", 0))
    probe.policy.publish(_policy_snapshot(7, seed=0))
    probe.dynamics.publish(_dynamics_snapshot(1, seed=0))
    count = lambda: sum(m.count for m in probe.mpc_msgs)  # noqa: E731
    spin_until(executor, lambda: count() == BATCH * HORIZON and planner.imaginations == 1)
    assert [m.count for m in probe.mpc_msgs] == [50, 50, 20]
    for msg in probe.mpc_msgs:
        assert (msg.source, msg.obs_dim, msg.act_dim, msg.policy_version) == ("mpc", OBS_DIM, ACT_DIM, 7)
        batch = msg_to_batch(msg)  # raises on non-finite values
        assert np.abs(batch["act"]).max() <= 1.0 and not batch["terminated"].any()

    # Rejected without effect: a corrupt snapshot, a wrong-sized one, a malformed batch. (One at a time:
    # a depth-1 snapshot writer keeps only its latest sample.)
    corrupt = _dynamics_snapshot(2, seed=1)
    corrupt.data[100] ^= 0xFF
    probe.dynamics.publish(corrupt)
    spin_until(executor, lambda: planner.rejected_snapshots == 1)
    probe.dynamics.publish(_dynamics_snapshot(3, seed=1, obs_dim=OBS_DIM + 1))
    bad = batch_to_msg(linear_system(5, rng), "env", 0)
    bad.obs = bad.obs[:-1]
    probe.env.publish(bad)
    spin_until(executor, lambda: (planner.rejected_snapshots, planner.rejected_batches) == (2, 1))
    assert planner.env_steps == 200 and planner.imaginations == 1

    probe.policy.publish(_policy_snapshot(8, seed=1))
    spin_until(executor, lambda: probe.diagnostics.get("planner", {}).get("policy_version") == "8")
    probe.dynamics.publish(_dynamics_snapshot(4, seed=2))
    spin_until(executor, lambda: count() == 2 * BATCH * HORIZON)
    assert {m.policy_version for m in probe.mpc_msgs[3:]} == {8}
    spin_until(executor, lambda: probe.diagnostics["planner"]["published_transitions"] == str(2 * BATCH * HORIZON))
    assert probe.diagnostics["planner"]["dynamics_version"] == "4"


@pytest.mark.parametrize("name, value, match", [
    ("elite_fraction", 0.0, r"parameter 'elite_fraction' is 0.0 but must be in \(0, 1\]"),
    ("algo", "mbpo", r"parameter 'algo' is 'mbpo' but must be one of mdemorl, mopac"),
    ("schedule_end_epoch", 0, r"parameter 'schedule_end_epoch' is 0 but must not precede schedule_start_epoch"),
])
def test_invalid_planner_parameters_name_the_parameter_and_the_fix(name, value, match):
    with pytest.raises(ValueError, match=match) as error:
        PlannerNode(parameter_overrides=overrides(**{name: value}))
    assert "config/planner.yaml" in str(error.value)


def test_invalid_model_trainer_parameters_name_the_parameter_and_the_fix():
    with pytest.raises(ValueError, match=r"parameter 'compute_dtype' is 'float16' but must be one of auto, "
                                         r"float32, bfloat16") as error:
        ModelTrainerNode(parameter_overrides=overrides(compute_dtype="float16"))
    assert "config/model_trainer.yaml" in str(error.value)


def test_task_rewards_only_where_the_observation_determines_them():
    from stochlite_bringup.tasks.leg_observed_reward import leg_reward_from_observation
    assert reward_fn("leg") is leg_reward_from_observation and reward_fn("Hopper-v5") is None
    with pytest.raises(ValueError, match=r"parameter 'imagined_reward' is 'task' but the reward of robot Hopper-v5 "
                                         r"cannot be computed from its observation; use 'model'"):
        PlannerNode(parameter_overrides=overrides(robot="Hopper-v5", imagined_reward="task"))


def test_termination_function_by_task():
    from stochlite_bringup.tasks.gym_tasks import hopper_termination_fn
    from stochlite_bringup.tasks.stochlite_env import stochlite_termination_fn
    assert termination_fn("leg") is None and termination_fn("HalfCheetah-v5") is None
    assert termination_fn("Hopper-v5") is hopper_termination_fn
    assert termination_fn("stochlite") is stochlite_termination_fn


def _start(executable, config):
    command = [str(Path(get_package_prefix("mdemorl_planner")) / "lib" / "mdemorl_planner" / executable),
               "--ros-args", "--params-file", str(CONFIG_DIR / config)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _start_node(executable, name, *overrides):
    command = [str(Path(get_package_prefix("mdemorl_planner")) / "lib" / "mdemorl_planner" / executable),
               "--ros-args", "--params-file", str(CONFIG_DIR / f"{name}.yaml"), *overrides]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _stop(process, sig):
    """Send ``sig`` to the process group; (exit code, output) within 5 s."""
    try:
        os.killpg(process.pid, sig)
        out, _ = process.communicate(timeout=5.0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, out


@pytest.mark.integration
def test_planner_process_exits_cleanly_on_sigterm(graph):
    executor, probe, _ = graph
    process = _start_node("planner_node", "planner")
    spin_until(executor, lambda: "planner" in probe.diagnostics)  # it spins: its diagnostics arrive
    code, out = _stop(process, signal.SIGTERM)
    assert code == 0 and "Traceback" not in out, out


@pytest.mark.integration
def test_model_trainer_process_exits_cleanly_on_sigint_in_the_middle_of_a_fit(graph):
    executor, probe, _ = graph
    process = _start_node("model_trainer_node", "model_trainer", "-p", "min_steps:=100", "-p",
                          "train_every_steps:=100", "-p", "diagnostics_period:=0.2")
    spin_until(executor, lambda: probe.env.get_subscription_count() > 0)
    probe.env.publish(batch_to_msg(linear_system(20_000, np.random.default_rng(2)), "env", 0))
    spin_until(executor, lambda: probe.diagnostics.get("model_trainer", {}).get("fitting") == "True")
    code, out = _stop(process, signal.SIGINT)  # the default 7x4x200 ensemble takes seconds on 20k rows
    assert code == 0 and "Traceback" not in out, out
    assert "dynamics v1" not in out
