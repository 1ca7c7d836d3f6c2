"""The single-process training loop (ROS-free): SAC on the task, plus model-based imagination by algorithm."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stochlite_bringup.tasks import make_task, task_init_alpha

from .config import TrainConfig
from .imagination import Imagination
from mdemorl_planner.compute import resolve_compute
from mdemorl_planner.cpu_setup import configure_cpu
from mdemorl_planner.replay_buffer import ReplayBuffer, sample_union
from mdemorl_planner.snapshots import to_cpu
from .sac import SAC, SACConfig


@dataclass
class EpochStats:
    """One row of progress.csv."""

    epoch: int
    env_steps: int
    eval_return: float
    train_return: float
    model_val_loss: float
    mpc_transitions: int
    sac_updates: int
    wall_s: float
    q_loss: float = float("nan")
    pi_loss: float = float("nan")
    alpha: float = float("nan")
    eval_forward_speed: float = float("nan")  # StochLite: distance along the slope / full episode time [m/s]


@dataclass
class EvalTrace:
    """What a deterministic evaluation episode did; foot paths are filled for the leg, forward speeds for StochLite."""

    episode_return: float
    foot: list[np.ndarray] = field(default_factory=list)
    foot_desired: list[np.ndarray] = field(default_factory=list)
    forward_speed: list[float] = field(default_factory=list)


class Trainer:
    """Algorithm 1 of the paper for mdemorl; the same loop with other imagination for mbpo/mopac, none for sac."""

    def __init__(self, cfg: TrainConfig):
        cfg.validate()
        self.cfg = cfg.with_task_defaults()
        configure_cpu(cfg.torch_threads)
        self.compute = resolve_compute(cfg.device, cfg.sac_dtype, cfg.model_dtype, cfg.planner_dtype)
        cfg = self.cfg.resolved(self.compute)  # what the parts below compute with; self.cfg keeps any `auto`
        torch.manual_seed(cfg.seed)
        task_kwargs = {"episode_steps": cfg.episode_steps} if cfg.episode_steps else {}
        self.env, self.spec = make_task(cfg.task, seed=cfg.seed, **task_kwargs)
        self.eval_env, _ = make_task(cfg.task, seed=cfg.seed + 10_000, **task_kwargs)
        self.agent = SAC(self.spec.obs_dim, self.spec.act_dim,
                         SACConfig(hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, gamma=cfg.gamma,
                                   tau=cfg.tau, actor_lr=cfg.lr, critic_lr=cfg.lr, alpha_lr=cfg.lr,
                                   init_alpha=cfg.init_alpha or task_init_alpha(cfg.task),
                                   batch_size=cfg.batch_size, compute_dtype=cfg.sac_dtype, device=cfg.device),
                         seed=cfg.seed)
        self.d_env = ReplayBuffer(self.spec.obs_dim, self.spec.act_dim, min(cfg.replay_size, cfg.epochs * cfg.steps_per_epoch))
        self.imagination = (Imagination(cfg, self.spec.obs_dim, self.spec.act_dim, self.agent, self.spec.termination_fn,
                                          self.spec.reward_fn)
                            if cfg.algo != "sac" else None)
        self.rng = np.random.default_rng(cfg.seed)
        self.env_steps = 0
        self.epoch = 0
        self.update_credit = 0.0
        self.last_losses: dict[str, float] = {}
        self.episode_return = 0.0
        self.finished_returns: list[float] = []
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.start_time = time.monotonic()

    def _act(self) -> np.ndarray:
        if self.env_steps < self.cfg.start_steps:
            return self.rng.uniform(-1.0, 1.0, self.spec.act_dim).astype(np.float32)
        return self.agent.act(self.obs, deterministic=False)

    def _sac_batch(self) -> dict[str, np.ndarray]:
        if self.imagination is None:
            return self.d_env.sample(self.cfg.batch_size, self.rng)
        return sample_union([self.d_env, self.imagination.d_mpc], [self.cfg.real_ratio, 1.0 - self.cfg.real_ratio],
                            self.cfg.batch_size, self.rng)

    def env_step(self) -> None:
        """Algorithm 1, line 4: one real interaction, then the learning work it triggers."""
        act = self._act()
        next_obs, reward, terminated, truncated, _ = self.env.step(act)
        self.d_env.add(self.obs, act, reward, next_obs, terminated)
        self.episode_return += float(reward)
        self.obs = next_obs
        self.env_steps += 1
        if terminated or truncated:
            self.finished_returns.append(self.episode_return)
            self.episode_return = 0.0
            self.obs, _ = self.env.reset()
        if self.imagination is not None and self.env_steps % self.cfg.model_train_freq == 0 \
                and self.env_steps >= self.cfg.start_steps:
            self.imagination.train_model(self.d_env)
            self.imagination.generate(self.d_env, self.epoch)
        if self.env_steps >= self.cfg.start_steps and len(self.d_env) >= self.cfg.batch_size:
            self.update_credit += self.cfg.updates_per_step
            while self.update_credit >= 1.0:
                self.last_losses = self.agent.update(self._sac_batch())
                self.update_credit -= 1.0

    def evaluate(self) -> EvalTrace:
        """Deterministic episodes of the current policy on a separate env; returns the mean and the last trace."""
        returns, trace = [], EvalTrace(0.0)
        for _ in range(self.cfg.eval_episodes):
            trace = EvalTrace(0.0)
            obs, _ = self.eval_env.reset()
            done = False
            while not done:
                obs, reward, terminated, truncated, info = self.eval_env.step(self.agent.act(obs, deterministic=True))
                trace.episode_return += float(reward)
                if "foot_position" in info:
                    trace.foot.append(np.asarray(info["foot_position"]))
                    trace.foot_desired.append(np.asarray(info["desired_foot_position"]))
                if "forward_speed" in info:
                    trace.forward_speed.append(float(info["forward_speed"]))
                done = terminated or truncated
            returns.append(trace.episode_return)
        trace.episode_return = float(np.mean(returns))
        return trace

    def run_epoch(self, on_step: Callable[[], None] | None = None) -> tuple[EpochStats, EvalTrace]:
        """One epoch of `steps_per_epoch` real steps, then a deterministic evaluation."""
        self.epoch += 1
        for _ in range(self.cfg.steps_per_epoch):
            self.env_step()
            if on_step is not None:
                on_step()
        trace = self.evaluate()
        recent = self.finished_returns[-5:]
        stats = EpochStats(
            epoch=self.epoch, env_steps=self.env_steps, eval_return=trace.episode_return,
            train_return=float(np.mean(recent)) if recent else float("nan"),
            model_val_loss=self.imagination.last_val_loss if self.imagination else float("nan"),
            mpc_transitions=self.imagination.total_imagined if self.imagination else 0,
            sac_updates=self.agent.updates, wall_s=time.monotonic() - self.start_time,
            q_loss=self.last_losses.get("q_loss", float("nan")),
            pi_loss=self.last_losses.get("pi_loss", float("nan")),
            alpha=self.last_losses.get("alpha", float("nan")),
            eval_forward_speed=(sum(trace.forward_speed) / self.spec.episode_steps if trace.forward_speed
                                else float("nan")))
        return stats, trace

    def save_checkpoint(self, path: Path) -> None:
        """Policy, critics, optimisers and (if any) the ensemble, written atomically."""
        state = {"config": self.cfg.__dict__, "epoch": self.epoch, "env_steps": self.env_steps,
                 "sac": self.agent.state_dict(),
                 "model": to_cpu(self.imagination.model.state_dict()) if self.imagination else None}
        tmp = Path(str(path) + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
