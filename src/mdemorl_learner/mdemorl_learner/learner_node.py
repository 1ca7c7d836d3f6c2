"""``learner_node``: SAC on D_ENV ∪ D_MPC from the graph's transitions (Algorithm 1, lines 8-11).

Subscribes ``/mdemorl/transitions/env`` and ``/mdemorl/transitions/mpc`` into D_ENV and D_MPC;
SAC updates run on a worker thread (``updates_per_step`` per env transition after
``start_steps``) so reception never waits for them. Publishes ``/mdemorl/policy`` (version =
SAC updates so far: 0 at start, then every ``policy_period_updates``), ``/mdemorl/status`` and
``/diagnostics`` (WARN while the updates it owes against ``updates_per_step`` exceed ``RATIO_MARGIN`` of
them and the backlog pacing allows: ``stalls.ratio_behind``; each onset is also a line of
``run_dir/health.log``). The n-th ``/mdemorl/eval_return`` closes epoch n once D_ENV has received the
epoch's n * ``steps_per_epoch`` transitions (topics are not ordered against each other): a row of
``run_dir/progress.csv`` (the single-process trainer's columns, ``env_steps`` = n * steps_per_epoch)
and ``checkpoints/latest.pt``; after epoch ``epochs`` the node exits 0, which marks the run complete.
``/mdemorl/save_checkpoint`` writes the checkpoint on demand.
Parameters: ``stochlite_bringup/config/learner.yaml``.
"""

import collections
import csv
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from mdemorl_msgs.msg import Snapshot, TrainingStatus, TransitionBatch
from mdemorl_planner.compute import DTYPE_SETTINGS
from mdemorl_planner.cpu_setup import configure_cpu
from mdemorl_planner.messages import (bytes_to_state_dict, msg_to_batch, msg_to_payload, snapshot_to_msg,
                                      state_dict_to_bytes)
from mdemorl_planner.node_compute import DEVICE_PARAMETER, node_compute
from mdemorl_planner.transition_log import TransitionLog
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, DYNAMICS_TOPIC, ENV_TOPIC,
                                            EVAL_RETURN_TOPIC, MPC_TOPIC, POLICY_TOPIC, RETURNS_QOS,
                                            SAVE_CHECKPOINT_SERVICE, SNAPSHOT_QOS, STATUS_QOS, STATUS_TOPIC,
                                            TRAIN_RETURN_TOPIC, TRANSITIONS_QOS)
from stochlite_bringup.node_diagnostics import LOG_THROTTLE_S, diagnostics_message
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT_OPEN_LOW, Param,
                                               Rule, declare_parameters, one_of)
from stochlite_bringup.node_worker import WorkerNode
from stochlite_bringup.run_health import HealthProblem, record_problem
from stochlite_bringup.task_names import TASK_NAMES
from stochlite_bringup.tasks.dimensions import task_dimensions
from stochlite_bringup.tasks import task_init_alpha, task_real_ratio

from .learner_core import LearnerCore
from .policy_runner import PACING_MODES
from .plotting import plot_foot_path, plot_learning_curve
from .sac import SACConfig
from .scalars import EpochScalars
from .stalls import (STALLS_FILE, EpochPace, PaceSample, describe_ratio_behind, describe_update_stall,
                     ratio_behind, record_stall, update_ratio_stalled)
from .trainer import EpochStats

NODE_NAME = "learner"
TRAIN_RETURN_WINDOW = 5  # progress.csv's train_return: mean of the last 5 training episodes, as the trainer
CHECKPOINT = Path("checkpoints") / "latest.pt"
D_ENV_LOG = "d_env"  # in run_dir: the append-only TransitionLog of every real transition
DIRECTORY = Rule(bool, "a directory path")
RATIO_BEHIND = "update ratio behind"  # the health.log kind of a window whose update ratio fell behind

PARAMETERS = {
    "robot": Param(str, "robot or task whose transitions arrive (fixes obs/act dims)", one_of(*TASK_NAMES)),
    "epochs": Param(int, "training epochs: after the epochs-th evaluation the node saves and exits 0", AT_LEAST_1),
    "steps_per_epoch": Param(int, "env steps per epoch (D_ENV holds at most epochs * steps_per_epoch)", AT_LEAST_1),
    "seed": Param(int, "seed of the initial weights, the SAC noise and minibatch sampling", NON_NEGATIVE),
    "run_dir": Param(str, "directory for progress.csv and checkpoints/latest.pt", DIRECTORY),
    "start_steps": Param(int, "env transitions before the first SAC update (the agent acts randomly until then)",
                         NON_NEGATIVE),
    "updates_per_step": Param(float, "SAC updates per received env transition (fractions accumulate)", POSITIVE),
    "batch_size": Param(int, "SAC minibatch size", AT_LEAST_1),
    "hidden_size": Param(int, "hidden layer width of actor and critics", AT_LEAST_1),
    "num_layers": Param(int, "hidden layers of actor and critics", AT_LEAST_1),
    "gamma": Param(float, "discount factor", UNIT_OPEN_LOW),
    "tau": Param(float, "Polyak rate of the target critics", UNIT_OPEN_LOW),
    "lr": Param(float, "learning rate of actor, critics and temperature", POSITIVE),
    "init_alpha": Param(float, "starting entropy temperature alpha of SAC's automatic tuning; 0 keeps the "
                        "robot's (1.0; stochlite 0.05)", NON_NEGATIVE),
    "replay_size": Param(int, "capacity of D_ENV (at most epochs * steps_per_epoch is used)", AT_LEAST_1),
    "mpc_capacity": Param(int, "capacity of D_MPC; the oldest planner transitions go beyond it", AT_LEAST_1),
    "real_ratio": Param(float, "fraction of each SAC minibatch drawn from D_ENV, the rest from D_MPC; -1 keeps the "
                        "robot's (leg 0.9, stochlite 0.5)", Rule(lambda v: v == -1 or 0 <= v <= 1, "in [0, 1], or -1")),
    "policy_period_updates": Param(int, "SAC updates between two policy snapshots", AT_LEAST_1),
    "pacing": Param(str, "the robot's pacing (the launch argument pacing:=): with episode the robot may run an "
                    "epoch's steps ahead of the updates before the ratio counts as behind",
                    one_of(*PACING_MODES)),
    "status_period_s": Param(float, "seconds between two /mdemorl/status and /diagnostics messages", POSITIVE),
    "torch_threads": Param(int, "torch intra-op threads of the SAC updates", AT_LEAST_1),
    "compute_dtype": Param(str, "dtype of the SAC updates' hidden-layer matmuls: auto (bfloat16 where a measured "
                           "probe shows it faster, else float32), float32, or bfloat16 (weights cast once per update; "
                           "Q values and losses stay float32)", one_of(*DTYPE_SETTINGS)),
    "device": DEVICE_PARAMETER,
    "resume": Param(bool, "continue the run in run_dir: D_ENV from run_dir/d_env, SAC and the epoch count from "
                    "checkpoints/latest.pt; false starts afresh (and empties run_dir/d_env)"),
}


class LearnerNode(WorkerNode):
    """The learner; ``exit_code`` becomes 0 once the final epoch's checkpoint is written."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        configure_cpu(p["torch_threads"])
        self.params = p
        self.compute = node_compute(NODE_NAME, p, "sac_dtype")
        dims = task_dimensions(p["robot"])
        obs_dim, act_dim = dims.obs_dim, dims.act_dim
        sac_config = SACConfig(hidden_size=p["hidden_size"], num_layers=p["num_layers"], gamma=p["gamma"],
                               tau=p["tau"], actor_lr=p["lr"], critic_lr=p["lr"], alpha_lr=p["lr"],
                               batch_size=p["batch_size"], init_alpha=p["init_alpha"] or task_init_alpha(p["robot"]),
                               compute_dtype=self.compute.sac_dtype, device=self.compute.device)
        self.core = LearnerCore(obs_dim, act_dim, sac_config, p["seed"],
                                min(p["replay_size"], p["epochs"] * p["steps_per_epoch"]), p["mpc_capacity"],
                                p["start_steps"], p["updates_per_step"], task_real_ratio(p["robot"], p["real_ratio"]))
        self.run_dir = Path(p["run_dir"])
        self.exit_code: int | None = None
        self.epoch = 0
        self.rejected = 0
        self.policy_version = 0
        self.eval_return = math.nan
        self.model_val_loss = math.nan
        self._train_returns: collections.deque[float] = collections.deque(maxlen=TRAIN_RETURN_WINDOW)
        self._pending_evals: collections.deque[float] = collections.deque()  # returns of epochs not closed yet
        self._start = time.monotonic()
        self._updates_at_status = 0
        self.stall = ""  # the update stall of the last epoch whose steps are all in D_ENV, if it had one
        self.ratio_behind = ""  # the update ratio so far, while it is behind

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._progress = self.run_dir / "progress.csv"
        self._columns = [f.name for f in dataclasses.fields(EpochStats)]
        self._log = TransitionLog(self.run_dir / D_ENV_LOG, obs_dim, act_dim)
        self._scalars = EpochScalars(self.run_dir)
        if p["resume"]:
            self._resume()
        else:
            self._log.clear()
            self._write_progress([])
            (self.run_dir / STALLS_FILE).unlink(missing_ok=True)
        self._epoch_start = (time.monotonic(), self.core.updates)  # when D_ENV began the current epoch's steps
        self._paced_epochs = self.core.env_steps // p["steps_per_epoch"]

        self._policy_pub = self.create_publisher(Snapshot, POLICY_TOPIC, SNAPSHOT_QOS)
        self._status_pub = self.create_publisher(TrainingStatus, STATUS_TOPIC, STATUS_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(TransitionBatch, ENV_TOPIC, self._on_env, TRANSITIONS_QOS)
        self.create_subscription(TransitionBatch, MPC_TOPIC, self._on_mpc, TRANSITIONS_QOS)
        self.create_subscription(Snapshot, DYNAMICS_TOPIC, self._on_dynamics, SNAPSHOT_QOS)
        self.create_subscription(Float64, EVAL_RETURN_TOPIC, self._on_eval_return, RETURNS_QOS)
        self.create_subscription(Float64, TRAIN_RETURN_TOPIC, self._on_train_return, RETURNS_QOS)
        self.create_service(Trigger, SAVE_CHECKPOINT_SERVICE, self._on_save_checkpoint)
        self.create_timer(p["status_period_s"], self._on_status_timer)
        self._publish_policy()
        self._worker = self.start_worker(self._train)
        self.get_logger().info(f"learning from {ENV_TOPIC} and {MPC_TOPIC} ({self.core.real_ratio:.0%} of each "
                               f"minibatch from D_ENV); run directory {self.run_dir}; SAC updates on "
                               f"{self.compute.device} in {self.compute.sac_dtype}")

    @property
    def pending_evaluations(self) -> int:
        """Evaluation returns received whose epoch still waits for its transitions."""
        return len(self._pending_evals)

    def request_stop(self) -> None:
        """SIGINT/SIGTERM: stop at once (exit 0); the last epoch's checkpoint stays on disk."""
        self.exit_code = 0


    def _resume(self) -> None:
        """Continue the run in run_dir: D_ENV from its log, SAC and the epoch count from the last checkpoint.

        progress.csv keeps the rows of the checkpoint's epochs (a row written just before a crash, whose
        checkpoint was not, is dropped: that epoch closes again).
        """
        checkpoint = self.run_dir / CHECKPOINT
        state = torch.load(checkpoint, map_location="cpu") if checkpoint.is_file() else None
        self.epoch = state["epoch"] if state is not None else 0
        self.core.restore(self._log.load(), state["sac"] if state is not None else None)
        rows = []
        if self._progress.is_file():
            with self._progress.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= self.epoch]
        self._write_progress(rows)
        self.get_logger().info(f"resumed {self.run_dir}: epoch {self.epoch}, {self.core.env_steps} transitions in "
                               f"D_ENV, {self.core.updates} SAC updates done")

    def _write_progress(self, rows: list[dict]) -> None:
        """progress.csv with these rows, replaced atomically."""
        tmp = self._progress.with_name(self._progress.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self._progress)

    # --- data in --------------------------------------------------------------------------------

    def _add_env(self, batch: dict) -> None:
        """Into D_ENV, then durably onto its log (a batch D_ENV refuses is not logged)."""
        self.core.add_env(batch)
        self._log.append(batch)

    def _on_env(self, msg: TransitionBatch) -> None:
        if self._store(msg, "env", self._add_env):
            self._worker.poke()
            self._check_pace()
            self._close_epochs()

    def _on_mpc(self, msg: TransitionBatch) -> None:
        self._store(msg, "mpc", self.core.add_mpc)

    def _store(self, msg: TransitionBatch, source: str, add) -> bool:
        try:
            if msg.source != source:
                raise ValueError(f"source is {msg.source!r}, expected {source!r}")
            if (msg.obs_dim, msg.act_dim) != (self.core.sac.obs_dim, self.core.sac.act_dim):
                raise ValueError(f"obs/act dims {msg.obs_dim}/{msg.act_dim}, expected "
                                 f"{self.core.sac.obs_dim}/{self.core.sac.act_dim}")
            add(msg_to_batch(msg))
        except ValueError as error:
            self.rejected += 1
            self.get_logger().warning(f"rejected {source} batch ({self.rejected} so far): {error}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return False
        return True

    def _on_dynamics(self, msg: Snapshot) -> None:
        try:
            val_loss = bytes_to_state_dict(msg_to_payload(msg)).get("val_loss")
            if not isinstance(val_loss, float):
                raise ValueError(f"'val_loss' is {val_loss!r}, expected a float")
        except ValueError as error:
            self.rejected += 1
            self.get_logger().warning(f"rejected dynamics snapshot v{msg.version}: {error}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        self.model_val_loss = val_loss

    def _on_train_return(self, msg: Float64) -> None:
        self._train_returns.append(msg.data)

    # --- learning (worker thread) ----------------------------------------------------------------

    def _train(self) -> None:
        period = self.params["policy_period_updates"]
        while not self._worker.stopping and self.core.update():
            if self.core.updates % period == 0:
                self._publish_policy()

    def _publish_policy(self) -> None:
        payload = self.core.policy_payload()
        payload["compute"] = self.compute_text  # for the agent's stall warnings
        version = self.core.updates
        self._policy_pub.publish(snapshot_to_msg("policy", version, state_dict_to_bytes(payload),
                                                 stamp=self.get_clock().now().to_msg()))
        self.policy_version = version

    # --- epochs, status, checkpoints -------------------------------------------------------------

    def _on_eval_return(self, msg: Float64) -> None:
        self._pending_evals.append(msg.data)
        self._close_epochs()

    def _close_epochs(self) -> None:
        """Close each epoch whose evaluation has arrived and whose transitions are all in D_ENV."""
        while self._pending_evals and self.core.env_steps >= (self.epoch + 1) * self.params["steps_per_epoch"]:
            self._close_epoch(self._pending_evals.popleft())

    @property
    def compute_text(self) -> str:
        return f"SAC {self.compute.sac_dtype} on {self.compute.device} ({self.compute.cpu_capability})"

    def _check_pace(self) -> None:
        """For each epoch whose real steps are now all in D_ENV: warn, in the log, /diagnostics and stalls.log,
        if fewer than half the owed SAC updates were made while they arrived."""
        p = self.params
        steps = p["steps_per_epoch"]
        while self.core.env_steps >= (self._paced_epochs + 1) * steps:
            self._paced_epochs += 1
            self._pace_epoch(self._paced_epochs, steps)

    def _pace_epoch(self, epoch: int, steps: int) -> None:
        """Judge the updates made while epoch ``epoch``'s steps arrived; with episode pacing, the robot runs an
        epoch ahead, so they are owed for the epoch before."""
        p, now = self.params, time.monotonic()
        owed_epoch = epoch - 1 if p["pacing"] == "episode" else epoch
        updates, seconds = self.core.updates - self._epoch_start[1], now - self._epoch_start[0]
        self._epoch_start = (now, self.core.updates)
        self.stall = ""
        if owed_epoch < 1:
            return
        credited = self.core.credited_steps((owed_epoch - 1) * steps, owed_epoch * steps)
        pace = EpochPace(owed_epoch, updates, credited, steps, seconds)
        if update_ratio_stalled(pace, p["updates_per_step"]):
            self.stall = describe_update_stall(pace, p["updates_per_step"], self.compute_text)
            self.get_logger().warning(f"learning stalled in {self.stall}")
            record_stall(self.run_dir, NODE_NAME, self.stall)

    def _close_epoch(self, eval_return: float) -> None:
        self.epoch += 1
        self.eval_return = eval_return
        losses = self.core.last_losses
        stats = EpochStats(
            epoch=self.epoch, env_steps=self.epoch * self.params["steps_per_epoch"], eval_return=eval_return,
            train_return=float(np.mean(self._train_returns)) if self._train_returns else math.nan,
            model_val_loss=self.model_val_loss, mpc_transitions=self.core.mpc_transitions,
            sac_updates=self.core.updates, wall_s=time.monotonic() - self._start,
            q_loss=losses.get("q_loss", math.nan), pi_loss=losses.get("pi_loss", math.nan),
            alpha=losses.get("alpha", math.nan))
        with self._progress.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns).writerow(dataclasses.asdict(stats))
        self._scalars.write(stats)
        self._save_checkpoint()
        self._write_plots()
        self._publish_status()
        self.get_logger().info(f"epoch {self.epoch}: eval return {eval_return:.2f}, {stats.env_steps} env steps, "
                               f"{stats.sac_updates} SAC updates, {stats.mpc_transitions} MPC transitions")
        if self.epoch >= self.params["epochs"]:
            self.get_logger().info(f"run complete: final checkpoint {self.run_dir / CHECKPOINT}")
            self.exit_code = 0

    def _write_plots(self) -> None:
        """learning_curve.png, and foot_path.png from the agent's last evaluation (foot_path.npz)."""
        title = f"M-DeMoRL graph on {self.params['robot']} (seed {self.params['seed']})"
        plot_learning_curve(self._progress, self.run_dir / "learning_curve.png", title)
        foot = self.run_dir / "foot_path.npz"
        if foot.is_file():
            with np.load(foot) as data:
                plot_foot_path(data["foot"], data["foot_desired"], float(data["dt"]),
                               self.run_dir / "foot_path.png", f"{title}, epoch {self.epoch}")

    def _save_checkpoint(self) -> Path:
        path = self.run_dir / CHECKPOINT
        self.core.save_checkpoint(path, dict(self.params), self.epoch)
        return path

    def _on_save_checkpoint(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            path = self._save_checkpoint()
        except OSError as error:
            response.success, response.message = False, f"checkpoint not written: {error}"
            return response
        response.success, response.message = True, str(path)
        return response

    def _on_status_timer(self) -> None:
        self._publish_status()
        updates = self.core.updates
        rate = (updates - self._updates_at_status) / self.params["status_period_s"]
        self._updates_at_status = updates
        values = {"env_transitions": self.core.env_steps, "mpc_transitions": self.core.mpc_transitions,
                  "sac_updates": updates, "updates_per_s": round(rate, 1),
                  "update_backlog": int(self.core.backlog), "policy_version": self.policy_version,
                  "epoch": self.epoch, "rejected_messages": self.rejected, **self.compute.values("sac_dtype")}
        self._check_ratio()
        problems = [f"{self.rejected} malformed messages rejected"] if self.rejected else []
        problems += [f"learning stalled in {self.stall}"] if self.stall else []
        problems += [f"{RATIO_BEHIND}: {self.ratio_behind}"] if self.ratio_behind else []
        problem = "; ".join(problems)
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))

    def _check_ratio(self) -> None:
        """Judge the update ratio so far; log and record in health.log when it falls behind."""
        pace = PaceSample(self.core.credited_steps(0, self.core.env_steps), self.core.updates)
        configured = self.params["updates_per_step"]
        was_behind = bool(self.ratio_behind)
        episode_backlog = self.params["steps_per_epoch"] if self.params["pacing"] == "episode" else 0
        behind = ratio_behind(pace, configured, self.params["policy_period_updates"], episode_backlog)
        self.ratio_behind = describe_ratio_behind(pace, configured) if behind else ""
        if behind and not was_behind:
            self.get_logger().warning(f"{RATIO_BEHIND}: {self.ratio_behind}; {self.compute_text}")
            record_problem(self.run_dir, HealthProblem(NODE_NAME, RATIO_BEHIND, 1, self.ratio_behind))

    def _publish_status(self) -> None:
        losses = self.core.last_losses
        msg = TrainingStatus(
            epoch=self.epoch, env_steps=self.core.env_steps, mpc_transitions=self.core.mpc_transitions,
            sac_updates=self.core.updates, policy_version=self.policy_version,
            train_return=self._train_returns[-1] if self._train_returns else math.nan,
            eval_return=self.eval_return, model_val_loss=self.model_val_loss,
            q_loss=losses.get("q_loss", math.nan), pi_loss=losses.get("pi_loss", math.nan),
            alpha=losses.get("alpha", math.nan), wall_s=time.monotonic() - self._start)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run mdemorl_learner learner_node``."""
    return run_node(LearnerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
