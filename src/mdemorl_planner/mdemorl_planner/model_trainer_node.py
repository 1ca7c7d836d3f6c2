"""model_trainer: fits the dynamics ensemble f_phi on D_ENV and publishes it (Algorithm 1, lines 5-7).

Subscribes /mdemorl/transitions/env into its own D_ENV; every ``train_every_steps`` new transitions
(once D_ENV holds ``min_steps``) fits the ensemble on all of D_ENV in a background thread and publishes
a dynamics Snapshot with a rising version on /mdemorl/dynamics. Diagnostics on /diagnostics.
"""
from __future__ import annotations

import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from mdemorl_msgs.msg import Snapshot, TransitionBatch
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, DYNAMICS_TOPIC, ENV_TOPIC, SNAPSHOT_QOS,
                                            TRANSITIONS_QOS)
from stochlite_bringup.node_diagnostics import LOG_THROTTLE_S, diagnostics_message
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT_OPEN_HIGH, Param,
                                               declare_parameters, one_of, parameter_error)
from stochlite_bringup.node_worker import WorkerNode

from .compute import DTYPE_SETTINGS
from .cpu_setup import configure_cpu
from .ensemble import ProbabilisticEnsemble
from .messages import msg_to_batch, snapshot_to_msg, state_dict_to_bytes
from .node_compute import DEVICE_PARAMETER, node_compute
from .replay_buffer import ReplayBuffer
from .snapshots import dynamics_payload
from .transition_log import read_transition_log

NODE_NAME = "model_trainer"

PARAMETERS = {
    "train_every_steps": Param(int, "new env transitions between two fits of the ensemble", AT_LEAST_1),
    "min_steps": Param(int, "env transitions D_ENV must hold before the first fit", AT_LEAST_1),
    "num_members": Param(int, "probabilistic networks in the ensemble (K)", AT_LEAST_1),
    "num_elites": Param(int, "members used for prediction, chosen by validation loss (<= num_members)", AT_LEAST_1),
    "hidden_size": Param(int, "hidden layer width of each member", AT_LEAST_1),
    "num_layers": Param(int, "hidden layers of each member", AT_LEAST_1),
    "learning_rate": Param(float, "Adam learning rate of the ensemble", POSITIVE),
    "max_epochs": Param(int, "cap on training epochs per fit (early stopping usually ends sooner)", AT_LEAST_1),
    "holdout_fraction": Param(float, "fraction of D_ENV held out for early stopping and elite selection",
                              UNIT_OPEN_HIGH),
    "compute_dtype": Param(str, "dtype of the training forward passes: auto (bfloat16 where a measured probe shows "
                           "it faster, else float32), bfloat16 (autocast, same held-out loss; validation stays "
                           "float32) or float32", one_of(*DTYPE_SETTINGS)),
    "device": DEVICE_PARAMETER,
    "replay_size": Param(int, "capacity of D_ENV; the oldest transitions are dropped beyond it", AT_LEAST_1),
    "seed": Param(int, "seed of the ensemble's initial weights and data splits", NON_NEGATIVE),
    "torch_threads": Param(int, "torch intra-op threads; 0 keeps torch's default", NON_NEGATIVE),
    "diagnostics_period": Param(float, "seconds between two /diagnostics messages", POSITIVE),
    "resume_log": Param(str, "directory of a run's D_ENV log (the learner's run_dir/d_env) to start from when "
                        "resuming; empty: start empty"),
}


class ModelTrainerNode(WorkerNode):
    """D_ENV in, dynamics snapshots out; the fit runs on a worker thread so messages keep arriving."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = p = declare_parameters(self, NODE_NAME, PARAMETERS)
        if p["num_elites"] > p["num_members"]:
            raise parameter_error(self.get_name(), "num_elites",
                                  f"is {p['num_elites']} but must not exceed num_members ({p['num_members']})")
        configure_cpu(p["torch_threads"])
        self.compute = node_compute(NODE_NAME, p, "model_dtype")
        self._lock = threading.Lock()  # guards D_ENV and the counters the worker reads
        self._d_env: ReplayBuffer | None = None  # created by the first batch, which fixes the dimensions
        self._model: ProbabilisticEnsemble | None = None
        self._fitted_block = 0  # received // train_every_steps at the last fit
        self.received = 0
        self.rejected = 0
        self.fits = 0
        self.last_val_loss = math.nan
        self.last_fit_seconds = math.nan
        self._dynamics_pub = self.create_publisher(Snapshot, DYNAMICS_TOPIC, SNAPSHOT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(TransitionBatch, ENV_TOPIC, self._on_env, TRANSITIONS_QOS)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self._worker = self.start_worker(self._fit_if_due)
        resumed = read_transition_log(p["resume_log"]) if p["resume_log"] else None
        if resumed is not None and len(resumed["reward"]):
            self._add_env(resumed)
            self._fitted_block = self.received // p["train_every_steps"] - 1  # fit once on the resumed D_ENV
            self.get_logger().info(f"resumed D_ENV: {self.received} transitions from {p['resume_log']}")
            self._worker.poke()
        self.get_logger().info(f"fitting the ensemble every {p['train_every_steps']} env transitions "
                               f"(first at {max(p['min_steps'], p['train_every_steps'])}) on "
                               f"{self.compute.device} in {self.compute.model_dtype}")

    def _add_env(self, batch: dict) -> None:
        """Store real transitions in D_ENV (the first batch fixes the dims); ValueError if they do not fit."""
        with self._lock:
            obs_dim, act_dim = batch["obs"].shape[1], batch["act"].shape[1]
            first = self._d_env is None
            d_env = ReplayBuffer(obs_dim, act_dim, self.params["replay_size"]) if first else self._d_env
            d_env.add_batch(batch["obs"], batch["act"], batch["reward"], batch["next_obs"], batch["terminated"])
            if first:
                self._d_env, self._model = d_env, self._new_model(obs_dim, act_dim)
            self.received += len(batch["reward"])

    def _on_env(self, msg: TransitionBatch) -> None:
        try:
            if msg.source != "env":
                raise ValueError(f"source is {msg.source!r}, expected 'env'")
            self._add_env(msg_to_batch(msg))
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"rejected transition batch ({self.rejected} so far): {exc}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._worker.poke()

    def _new_model(self, obs_dim: int, act_dim: int) -> ProbabilisticEnsemble:
        p = self.params
        return ProbabilisticEnsemble(obs_dim, act_dim, num_members=p["num_members"], num_elites=p["num_elites"],
                                     hidden_size=p["hidden_size"], num_layers=p["num_layers"],
                                     learning_rate=p["learning_rate"], seed=p["seed"], device=self.compute.device)

    def _fit_if_due(self) -> None:
        """Worker thread: fit on a copy of D_ENV when a new block of ``train_every_steps`` is complete."""
        p = self.params
        with self._lock:
            block = self.received // p["train_every_steps"]
            if self._d_env is None or block <= self._fitted_block or len(self._d_env) < p["min_steps"]:
                return
            self._fitted_block = block
            data = self._d_env.all()
        start = time.monotonic()
        stats = self._model.fit(data["obs"], data["act"], data["reward"], data["next_obs"],
                                holdout_fraction=p["holdout_fraction"], max_epochs=p["max_epochs"],
                                compute_dtype=self.compute.model_dtype)
        payload = state_dict_to_bytes(dynamics_payload(self._model, p["hidden_size"], p["num_layers"],
                                                       stats["val_loss"]))
        if self._worker.stopping:
            return
        self.last_fit_seconds = time.monotonic() - start
        self.last_val_loss = float(stats["val_loss"])
        self.fits += 1
        self._dynamics_pub.publish(snapshot_to_msg("dynamics", self.fits, payload,
                                                   stamp=self.get_clock().now().to_msg()))
        self.get_logger().info(
            f"dynamics v{self.fits}: fit on {len(data['reward'])} transitions, {stats['epochs']} epochs, "
            f"elite val MSE {self.last_val_loss:.4g}, {self.last_fit_seconds:.2f} s")

    def _publish_diagnostics(self) -> None:
        values = {"transitions": self.received, "fits": self.fits, "last_val_loss": self.last_val_loss,
                  "last_fit_seconds": self.last_fit_seconds, "fitting": self._worker.busy,
                  "rejected_batches": self.rejected, **self.compute.values("model_dtype")}
        problem = f"{self.rejected} malformed transition batches rejected" if self.rejected else ""
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))



def main(args: list[str] | None = None) -> int:
    return run_node(ModelTrainerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
