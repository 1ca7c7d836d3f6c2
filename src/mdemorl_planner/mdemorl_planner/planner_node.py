"""planner: DMD-MPC imagination into D_MPC after every new dynamics snapshot (Algorithm 1, lines 8-16).

Subscribes /mdemorl/transitions/env (its own D_ENV, for start states) and the latest policy and dynamics
snapshots (transient-local). After each new dynamics snapshot, once a policy is known too, a worker
thread draws start states uniformly from D_ENV, runs DMD-MPC (CEM elites for mdemorl, MPPI with
alpha = 1 for mopac) and publishes the imagined transitions on /mdemorl/transitions/mpc in chunks,
tagged with the version of the policy snapshot used. Horizon and batch follow the epoch schedules.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from mdemorl_msgs.msg import Snapshot, TransitionBatch
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, DYNAMICS_TOPIC, ENV_TOPIC, MPC_TOPIC,
                                            POLICY_TOPIC, SNAPSHOT_QOS, TRANSITIONS_QOS)
from stochlite_bringup.node_diagnostics import LOG_THROTTLE_S, diagnostics_message
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT_CLOSED, UNIT_OPEN_LOW, Param,
                                               declare_parameters, one_of, parameter_error)
from stochlite_bringup.node_worker import WorkerNode
from stochlite_bringup.task_names import LEG_TASK_NAME, STOCHLITE_TASK_NAME, TASK_NAMES

from .compute import DTYPE_SETTINGS
from .cpu_setup import configure_cpu
from .dmd_mpc import DMDMPCPlanner, PlannerConfig
from .ensemble import ProbabilisticEnsemble
from .messages import batch_to_msg, bytes_to_state_dict, msg_to_batch, msg_to_payload
from .node_compute import DEVICE_PARAMETER, node_compute
from .replay_buffer import ReplayBuffer
from .schedules import LinearSchedule
from .snapshots import PolicyValue, load_dynamics, load_policy
from .task_reward_model import IMAGINED_REWARDS, TaskRewardModel, uses_task_reward
from .transition_log import read_transition_log

NODE_NAME = "planner"
SEED_RANGE = 2**31

PARAMETERS = {
    "algo": Param(str, "inner loop: mdemorl (DMD-MPC with CEM elites) or mopac (MPPI, alpha = 1)",
                  one_of("mdemorl", "mopac")),
    "robot": Param(str, "task whose termination function ends imagined trajectories (leg: none)",
                   one_of(*TASK_NAMES)),
    "steps_per_epoch": Param(int, "real env steps per epoch; env step k belongs to epoch "
                             "(k - 1) // steps_per_epoch + 1, which drives the schedules", AT_LEAST_1),
    "horizon_start": Param(int, "planning horizon H at schedule_start_epoch (paper: 5)", AT_LEAST_1),
    "horizon_end": Param(int, "planning horizon H from schedule_end_epoch on (paper: 15)", AT_LEAST_1),
    "schedule_start_epoch": Param(int, "epoch where the horizon and batch schedules start growing", NON_NEGATIVE),
    "schedule_end_epoch": Param(int, "epoch where the horizon and batch reach their final values "
                                "(>= schedule_start_epoch)", NON_NEGATIVE),
    "rollout_batch_start": Param(int, "start states per imagination round at schedule_start_epoch", AT_LEAST_1),
    "rollout_batch_max": Param(int, "start states per round from schedule_end_epoch on (paper: up to 10,000)",
                               AT_LEAST_1),
    "num_samples": Param(int, "sampled control sequences per start state M (paper: 100)", AT_LEAST_1),
    "elite_fraction": Param(float, "CEM elite fraction p (eq. 13; paper: 10 %, default 1 %)", UNIT_OPEN_LOW),
    "mirror_alpha": Param(float, "mirror-descent step size alpha of eq. 9 (mdemorl)", UNIT_CLOSED),
    "sigma": Param(float, "std of the control distribution around the policy mean (eq. 11)", POSITIVE),
    "gamma": Param(float, "discount of the H-step cost (eq. 3)", UNIT_OPEN_LOW),
    "mppi_temperature": Param(float, "MPPI temperature lambda (mopac)", POSITIVE),
    "imagined_reward": Param(str, "reward of imagined transitions: model (the ensemble's reward head, as in the "
                             "paper), task (the robot's reward of the predicted next state; leg only) or auto "
                             "(task where possible, else model)", one_of(*IMAGINED_REWARDS)),
    "compute_dtype": Param(str, "dtype of the planner's matmuls: auto (bfloat16 where a measured probe shows it "
                           "faster, else float32), bfloat16 (states and costs stay float32) or float32",
                           one_of(*DTYPE_SETTINGS)),
    "device": DEVICE_PARAMETER,
    "publish_chunk": Param(int, "most transitions per TransitionBatch message on the mpc topic", AT_LEAST_1),
    "replay_size": Param(int, "capacity of the planner's D_ENV (start states)", AT_LEAST_1),
    "seed": Param(int, "seed of the start-state sampling and the planner's noise", NON_NEGATIVE),
    "torch_threads": Param(int, "torch intra-op threads; 0 keeps torch's default", NON_NEGATIVE),
    "diagnostics_period": Param(float, "seconds between two /diagnostics messages", POSITIVE),
    "resume_log": Param(str, "directory of a run's D_ENV log (the learner's run_dir/d_env) whose states to start "
                        "from when resuming; empty: start empty"),
}


def termination_fn(robot: str):
    """The task's model-rollout termination function, without building its environment."""
    if robot == LEG_TASK_NAME:
        return None
    if robot == STOCHLITE_TASK_NAME:
        from stochlite_bringup.tasks.stochlite_env import stochlite_termination_fn
        return stochlite_termination_fn
    from stochlite_bringup.tasks.gym_tasks import TERMINATION_FNS  # loads the simulators: only when needed
    return TERMINATION_FNS[robot]


def reward_fn(robot: str):
    """The task's reward of a transition computed from its observations (leg), or None if it has none."""
    from stochlite_bringup.tasks.leg_observed_reward import observed_reward_fn
    return observed_reward_fn(robot)


class PlannerNode(WorkerNode):
    """Start states, policy and dynamics in; imagined D_MPC transitions out."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = p = declare_parameters(self, NODE_NAME, PARAMETERS)
        if p["schedule_end_epoch"] < p["schedule_start_epoch"]:
            raise parameter_error(self.get_name(), "schedule_end_epoch", f"is {p['schedule_end_epoch']} but must "
                                  f"not precede schedule_start_epoch ({p['schedule_start_epoch']})")
        configure_cpu(p["torch_threads"])
        self.compute = node_compute(NODE_NAME, p, "planner_dtype")
        self._horizon = LinearSchedule(p["schedule_start_epoch"], p["schedule_end_epoch"], p["horizon_start"],
                                       p["horizon_end"])
        self._batch = LinearSchedule(p["schedule_start_epoch"], p["schedule_end_epoch"], p["rollout_batch_start"],
                                     p["rollout_batch_max"])
        self._termination_fn = termination_fn(p["robot"])
        task_reward = reward_fn(p["robot"])
        try:
            use_task_reward = uses_task_reward(p["imagined_reward"], task_reward is not None, f"robot {p['robot']}")
        except ValueError as err:
            raise parameter_error(self.get_name(), "imagined_reward", str(err)) from err
        self._reward_fn = task_reward if use_task_reward else None
        self._rng = np.random.default_rng(p["seed"])
        self._lock = threading.Lock()  # guards D_ENV, the latest snapshots and the counters below
        self._dims: tuple[int, int] | None = None  # (obs_dim, act_dim), fixed by the first accepted input
        self._d_env: ReplayBuffer | None = None
        self._policy: tuple[int, PolicyValue] | None = None  # (version, networks)
        self._dynamics: tuple[int, ProbabilisticEnsemble] | None = None
        self._dynamics_pending = False  # a dynamics snapshot not yet imagined with
        self.env_steps = 0
        self.rejected_batches = 0
        self.rejected_snapshots = 0
        self.imaginations = 0
        self.published = 0
        self.dropped_nonfinite = 0
        self.last_imagine_seconds = math.nan
        self.last_publish_seconds = math.nan
        self._mpc_pub = self.create_publisher(TransitionBatch, MPC_TOPIC, TRANSITIONS_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(TransitionBatch, ENV_TOPIC, self._on_env, TRANSITIONS_QOS)
        self.create_subscription(Snapshot, POLICY_TOPIC, self._on_policy, SNAPSHOT_QOS)
        self.create_subscription(Snapshot, DYNAMICS_TOPIC, self._on_dynamics, SNAPSHOT_QOS)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self._worker = self.start_worker(self._imagine_if_due)
        resumed = read_transition_log(p["resume_log"]) if p["resume_log"] else None
        if resumed is not None and len(resumed["reward"]):
            self._add_env(resumed)
            self.get_logger().info(f"resumed D_ENV: {self.env_steps} start states from {p['resume_log']}")
        self.get_logger().info(f"{p['algo']} imagination for {p['robot']}: H {p['horizon_start']}->{p['horizon_end']}, "
                               f"batch {p['rollout_batch_start']}->{p['rollout_batch_max']}, M={p['num_samples']}, on "
                               f"{self.compute.device} in {self.compute.planner_dtype}")

    def _check_dims(self, obs_dim: int, act_dim: int, what: str) -> None:
        if self._dims is not None and (obs_dim, act_dim) != self._dims:
            raise ValueError(f"{what} has obs_dim/act_dim {obs_dim}/{act_dim}, but this graph uses "
                             f"{self._dims[0]}/{self._dims[1]}")

    def _add_env(self, batch: dict) -> None:
        """Store real transitions as start states; ValueError if they do not fit this graph's dims."""
        dims = batch["obs"].shape[1], batch["act"].shape[1]
        with self._lock:
            self._check_dims(*dims, "transition batch")
            d_env = ReplayBuffer(*dims, self.params["replay_size"]) if self._d_env is None else self._d_env
            d_env.add_batch(batch["obs"], batch["act"], batch["reward"], batch["next_obs"], batch["terminated"])
            self._d_env, self._dims = d_env, dims
            self.env_steps += len(batch["reward"])

    def _on_env(self, msg: TransitionBatch) -> None:
        try:
            if msg.source != "env":
                raise ValueError(f"source is {msg.source!r}, expected 'env'")
            self._add_env(msg_to_batch(msg))
        except ValueError as exc:
            self.rejected_batches += 1
            self.get_logger().warning(f"rejected transition batch ({self.rejected_batches} so far): {exc}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._worker.poke()

    def _read_snapshot(self, msg: Snapshot, kind: str, load):
        """The loaded snapshot, or None after counting and logging why it was rejected."""
        try:
            if msg.kind != kind:
                raise ValueError(f"kind is {msg.kind!r}, expected {kind!r}")
            loaded = load(bytes_to_state_dict(msg_to_payload(msg)))
            with self._lock:
                self._check_dims(loaded.obs_dim, loaded.act_dim, f"{kind} snapshot v{msg.version}")
                self._dims = loaded.obs_dim, loaded.act_dim
            return loaded
        except ValueError as exc:
            self.rejected_snapshots += 1
            self.get_logger().warning(f"rejected {kind} snapshot ({self.rejected_snapshots} so far): {exc}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return None

    def _on_policy(self, msg: Snapshot) -> None:
        policy = self._read_snapshot(msg, "policy", lambda state: load_policy(state, device=self.compute.device))
        if policy is not None:
            with self._lock:
                self._policy = msg.version, policy
            self._worker.poke()

    def _on_dynamics(self, msg: Snapshot) -> None:
        model = self._read_snapshot(msg, "dynamics", lambda state: load_dynamics(state, device=self.compute.device))
        if model is not None:
            with self._lock:
                self._dynamics = msg.version, model
                self._dynamics_pending = True
            self._worker.poke()

    def _planner_config(self, horizon: int) -> PlannerConfig:
        p = self.params
        mppi = p["algo"] == "mopac"
        return PlannerConfig(horizon=horizon, num_samples=p["num_samples"], elite_fraction=p["elite_fraction"],
                             alpha=1.0 if mppi else p["mirror_alpha"], sigma=p["sigma"], gamma=p["gamma"],
                             weighting="mppi" if mppi else "cem", mppi_temperature=p["mppi_temperature"],
                             compute_dtype=self.compute.planner_dtype, device=self.compute.device)

    def _imagine_if_due(self) -> None:
        """Worker thread: one imagination round with the latest dynamics and policy, then publish D_MPC."""
        p = self.params
        with self._lock:
            if not (self._dynamics_pending and self._policy and self._d_env is not None and len(self._d_env)):
                return
            self._dynamics_pending = False
            (policy_version, policy), (dynamics_version, model) = self._policy, self._dynamics
            epoch = (max(self.env_steps, 1) - 1) // p["steps_per_epoch"] + 1
            x0 = self._d_env.sample(min(int(self._batch(epoch)), len(self._d_env)), self._rng)["obs"]
            seed = int(self._rng.integers(SEED_RANGE))
        horizon = int(self._horizon(epoch))
        start = time.monotonic()
        rollout_model = TaskRewardModel(model, self._reward_fn) if self._reward_fn is not None else model
        planner = DMDMPCPlanner(self._planner_config(horizon), rollout_model, policy.policy_mean, policy.value,
                                termination_fn=self._termination_fn, seed=seed)
        data = planner.imagine(x0)
        imagine_seconds = time.monotonic() - start
        finite = (np.isfinite(data["obs"]).all(-1) & np.isfinite(data["next_obs"]).all(-1)
                  & np.isfinite(data["reward"]))
        data = {k: v[finite] for k, v in data.items()}
        count, dropped = len(data["reward"]), int((~finite).sum())
        start = time.monotonic()
        for first in range(0, count, p["publish_chunk"]):
            if self._worker.stopping:
                return
            chunk = {k: v[first:first + p["publish_chunk"]] for k, v in data.items()}
            self._mpc_pub.publish(batch_to_msg(chunk, "mpc", policy_version, stamp=self.get_clock().now().to_msg()))
        self.last_publish_seconds = time.monotonic() - start
        self.last_imagine_seconds = imagine_seconds
        self.dropped_nonfinite += dropped
        self.published += count
        self.imaginations += 1
        self.get_logger().info(
            f"epoch {epoch}: {len(x0)} start states x H={horizon} with dynamics v{dynamics_version}, "
            f"policy v{policy_version}: {count} transitions ({dropped} non-finite dropped), "
            f"imagined in {imagine_seconds:.2f} s, published in {self.last_publish_seconds:.2f} s")

    def _publish_diagnostics(self) -> None:
        with self._lock:
            versions = [None if s is None else s[0] for s in (self._policy, self._dynamics)]
        values = {"env_transitions": self.env_steps, "policy_version": versions[0], "dynamics_version": versions[1],
                  "imaginations": self.imaginations, "published_transitions": self.published,
                  "dropped_nonfinite": self.dropped_nonfinite, "last_imagine_seconds": self.last_imagine_seconds,
                  "last_publish_seconds": self.last_publish_seconds, "imagining": self._worker.busy,
                  "rejected_batches": self.rejected_batches, "rejected_snapshots": self.rejected_snapshots,
                  **self.compute.values("planner_dtype")}
        rejected = self.rejected_batches + self.rejected_snapshots
        problem = f"{rejected} malformed inputs rejected" if rejected else ""
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))



def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
