"""Model-generated experience: the ensemble, its training on D_ENV, and D_MPC for mbpo, mopac and mdemorl.

- mbpo: branched rollouts of the stochastic policy from D_ENV start states (Janner et al. 2019).
- mopac: MPPI-improved action sequences (softmax weights, alpha = 1) with the critic as terminal value.
- mdemorl: DMD-MPC with CEM elites (eqs. 9-14) around the policy-shifted mean; Algorithm 1, lines 8-16.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from mdemorl_planner.dmd_mpc import DMDMPCPlanner, PlannerConfig
from mdemorl_planner.ensemble import ProbabilisticEnsemble
from mdemorl_planner.schedules import LinearSchedule
from mdemorl_planner.task_reward_model import RewardFn, TaskRewardModel, uses_task_reward

from .config import TrainConfig
from mdemorl_planner.replay_buffer import ReplayBuffer
from .sac import SAC

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def policy_rollout(model: ProbabilisticEnsemble | TaskRewardModel, agent: SAC, x0: np.ndarray, length: int,
                   termination_fn: TerminationFn | None) -> dict[str, np.ndarray]:
    """MBPO's branched rollout: the stochastic policy acts in the model for `length` steps from x0.

    The model steps on the agent's device."""
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "reward", "next_obs", "terminated")}
    obs = torch.as_tensor(x0, dtype=torch.float32, device=agent.device)
    for _ in range(length):
        if obs.shape[0] == 0:
            break
        act = torch.as_tensor(agent.act(obs.cpu().numpy(), deterministic=False), dtype=torch.float32,
                              device=agent.device)
        next_obs, reward = model.step(obs, act)
        done = (termination_fn(obs, act, next_obs) if termination_fn is not None
                else torch.zeros(obs.shape[0], dtype=torch.bool, device=agent.device))
        for key, value in (("obs", obs), ("act", act), ("reward", reward), ("next_obs", next_obs), ("terminated", done)):
            chunks[key].append(value.cpu().numpy())
        obs = next_obs[~done]
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in chunks.items()}


class Imagination:
    """Owns the ensemble and D_MPC; trains the model on D_ENV and fills D_MPC by the chosen algorithm."""

    def __init__(self, cfg: TrainConfig, obs_dim: int, act_dim: int, agent: SAC,
                 termination_fn: TerminationFn | None, reward_fn: RewardFn | None = None):
        """``reward_fn``: the task's reward of a transition; used instead of the learned one when
        ``cfg.imagined_reward`` is ``task`` (or ``auto`` on a task that has one)."""
        self.cfg = cfg
        self.agent = agent
        self.termination_fn = termination_fn
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.model = ProbabilisticEnsemble(obs_dim, act_dim, num_members=cfg.ensemble_size,
                                           num_elites=cfg.num_elites, hidden_size=cfg.model_hidden,
                                           num_layers=cfg.model_layers, learning_rate=cfg.model_lr, seed=cfg.seed,
                                           device=cfg.device)
        try:
            task_reward = uses_task_reward(cfg.imagined_reward, reward_fn is not None, cfg.task)
        except ValueError as err:
            raise ValueError(f"--imagined-reward {err}") from err
        self.rollout_model = TaskRewardModel(self.model, reward_fn) if task_reward else self.model
        self.horizon = LinearSchedule(cfg.schedule_start_epoch, cfg.schedule_end_epoch,
                                      cfg.horizon_start, cfg.horizon_end)
        self.batch = LinearSchedule(cfg.schedule_start_epoch, cfg.schedule_end_epoch,
                                    cfg.rollout_batch_start, cfg.rollout_batch_max)
        rounds_per_epoch = math.ceil(cfg.steps_per_epoch / cfg.model_train_freq)
        longest = cfg.mbpo_rollout_length if cfg.algo == "mbpo" else cfg.horizon_end
        capacity = cfg.rollout_batch_max * longest * rounds_per_epoch * cfg.model_retain_epochs
        self.d_mpc = ReplayBuffer(obs_dim, act_dim, capacity)
        self.total_imagined = 0
        self.dropped_nonfinite = 0
        self.last_val_loss = float("nan")

    def train_model(self, d_env: ReplayBuffer) -> float:
        """Algorithm 1, lines 5-7: fit the ensemble to (Δx, r) on D_ENV; returns the elites' validation MSE."""
        data = d_env.all()
        stats = self.model.fit(data["obs"], data["act"], data["reward"], data["next_obs"],
                               holdout_fraction=self.cfg.model_holdout, max_epochs=self.cfg.model_max_epochs,
                               compute_dtype=self.cfg.model_dtype)
        self.last_val_loss = float(stats["val_loss"])
        return self.last_val_loss

    def planner(self, epoch: int) -> DMDMPCPlanner:
        """The inner-loop optimiser for this epoch: CEM elites for mdemorl, MPPI with alpha = 1 for mopac."""
        cfg = self.cfg
        mppi = cfg.algo == "mopac"
        config = PlannerConfig(horizon=int(self.horizon(epoch)), num_samples=cfg.num_samples,
                               elite_fraction=cfg.elite_fraction, alpha=1.0 if mppi else cfg.mirror_alpha,
                               sigma=cfg.sigma, gamma=cfg.gamma, weighting="mppi" if mppi else "cem",
                               mppi_temperature=cfg.mppi_temperature, compute_dtype=cfg.planner_dtype,
                               device=cfg.device)
        return DMDMPCPlanner(config, self.rollout_model, self.agent.policy_mean, self.agent.value,
                             termination_fn=self.termination_fn, seed=int(self.rng.integers(2**31)))

    def generate(self, d_env: ReplayBuffer, epoch: int) -> int:
        """Algorithm 1, lines 9-16: start states drawn uniformly from D_ENV, imagined transitions into D_MPC."""
        count = min(int(self.batch(epoch)), len(d_env))
        x0 = d_env.sample(count, self.rng)["obs"]
        if self.cfg.algo == "mbpo":
            data = policy_rollout(self.rollout_model, self.agent, x0, self.cfg.mbpo_rollout_length, self.termination_fn)
        else:
            data = self.planner(epoch).imagine(x0)
        finite = (np.isfinite(data["obs"]).all(-1) & np.isfinite(data["next_obs"]).all(-1)
                  & np.isfinite(data["reward"])) if len(data["reward"]) else np.zeros(0, dtype=bool)
        self.dropped_nonfinite += int((~finite).sum())
        n = int(finite.sum())
        if n:
            self.d_mpc.add_batch(data["obs"][finite], data["act"][finite], data["reward"][finite],
                                 data["next_obs"][finite], data["terminated"][finite])
        self.total_imagined += n
        return n
