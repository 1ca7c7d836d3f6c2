"""The learner without ROS: SAC on D_ENV ∪ D_MPC, fed with transition batches from other threads.

Mirrors the learning half of ``Trainer.env_step``: once an env transition's index reaches
``start_steps`` (and D_ENV holds a minibatch) it adds ``updates_per_step`` update credit;
each whole unit is one SAC update on a minibatch that draws ``real_ratio`` of its rows from
D_ENV and the rest from D_MPC (all from D_ENV while D_MPC is empty). Adding data and
updating may run on different threads; a batch that does not fit is refused whole.
"""

import copy
import threading
from pathlib import Path

import numpy as np
import torch
from mdemorl_planner.replay_buffer import FIELDS, ReplayBuffer, sample_union
from mdemorl_planner.snapshots import policy_payload, to_cpu

from .sac import SAC, SACConfig


class LearnerCore:
    """SAC, D_ENV, D_MPC and the update credit; thread-safe between adders and one updater."""

    def __init__(self, obs_dim: int, act_dim: int, sac_config: SACConfig, seed: int, env_capacity: int,
                 mpc_capacity: int, start_steps: int, updates_per_step: float, real_ratio: float) -> None:
        self.sac = SAC(obs_dim, act_dim, sac_config, seed=seed)
        self.d_env = ReplayBuffer(obs_dim, act_dim, env_capacity)
        self.d_mpc = ReplayBuffer(obs_dim, act_dim, mpc_capacity)
        self.start_steps = start_steps
        self.updates_per_step = updates_per_step
        self.real_ratio = real_ratio
        self.rng = np.random.default_rng(seed)
        self.env_steps = 0
        self.mpc_transitions = 0
        self.last_losses: dict[str, float] = {}
        self._credit = 0.0
        self._data_lock = threading.Lock()  # buffers, counters, credit, rng
        self._sac_lock = threading.Lock()  # SAC weights and optimisers

    @property
    def updates(self) -> int:
        return self.sac.updates

    @property
    def backlog(self) -> float:
        """Update credit not yet spent (updates owed to the data received)."""
        return self._credit

    def add_env(self, batch: dict[str, np.ndarray]) -> None:
        """Store real transitions; ValueError (nothing stored) if they do not fit D_ENV."""
        with self._data_lock:
            self.d_env.add_batch(*(batch[k] for k in FIELDS))
            before, self.env_steps = self.env_steps, self.env_steps + len(batch["reward"])
            self._credit += self.credited_steps(before, self.env_steps) * self.updates_per_step

    def credited_steps(self, after: int, last: int) -> int:
        """How many env steps with an index in (after, last] earn update credit (Trainer.env_step's condition)."""
        first_eligible = max(self.start_steps, self.sac.config.batch_size)
        return max(0, last - max(after, first_eligible - 1))

    def restore(self, d_env: dict[str, np.ndarray], sac_state: dict | None) -> None:
        """Resume: D_ENV from a log and, if given, the SAC state of a checkpoint. The update credit owed
        to D_ENV beyond what that state has trained on carries over, so the one-update-per-step ratio holds."""
        if sac_state is not None:
            self.sac.load_state_dict(sac_state)
        if len(d_env["reward"]):
            self.add_env(d_env)
        with self._data_lock:
            self._credit = max(0.0, self._credit - self.sac.updates)

    def add_mpc(self, batch: dict[str, np.ndarray]) -> None:
        """Store planner transitions; ValueError (nothing stored) if they do not fit D_MPC."""
        with self._data_lock:
            self.d_mpc.add_batch(*(batch[k] for k in FIELDS))
            self.mpc_transitions += len(batch["reward"])

    def update(self) -> bool:
        """One SAC update if a unit of credit is available; False if none is."""
        with self._data_lock:
            if self._credit < 1.0:
                return False
            self._credit -= 1.0
            batch = sample_union([self.d_env, self.d_mpc], [self.real_ratio, 1.0 - self.real_ratio],
                                 self.sac.config.batch_size, self.rng)
        with self._sac_lock:
            self.last_losses = self.sac.update(batch)
        return True

    def policy_payload(self) -> dict:
        """The policy snapshot's payload (a copy on the CPU): actor, critic and their sizes."""
        cfg = self.sac.config
        with self._sac_lock:
            return copy.deepcopy(to_cpu(policy_payload(self.sac.actor, self.sac.critic, self.sac.obs_dim,
                                                       self.sac.act_dim, cfg.hidden_size, cfg.num_layers)))

    def save_checkpoint(self, path: Path, config: dict, epoch: int) -> None:
        """Write the SAC state like ``Trainer.save_checkpoint`` (``model`` None), atomically."""
        with self._sac_lock:
            sac_state = self.sac.state_dict()
        state = {"config": config, "epoch": epoch, "env_steps": self.env_steps, "sac": sac_state, "model": None}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
