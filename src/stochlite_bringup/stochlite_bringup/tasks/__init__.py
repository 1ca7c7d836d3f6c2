"""Training tasks: the 2R-leg tracking task, StochLite walking and the gymnasium MuJoCo benchmarks.

``make_task(name)`` returns the env and a :class:`TaskSpec` with its dimensions,
episode length, and the termination and (where the observation determines it) reward functions for
model rollouts.

Importing the package loads no simulator, gymnasium or torch: the envs (``LegTrackingEnv``,
``StochliteEnv``) are imported on first use, and ``make_task`` imports what it builds. So a light module
such as ``leg_task`` (the leg's observation and eq. 15's reward) loads only numpy, and serves processes
that must stay light, such as the policy runner next to the hardware.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..task_names import LEG_TASK_NAME, STOCHLITE_TASK_NAME, TASK_NAMES
from .leg_reward import leg_tracking_reward

if TYPE_CHECKING:
    import gymnasium

    from .leg_env import LegTrackingEnv
    from .stochlite_env import StochliteEnv

ENV_MODULES = {"LegTrackingEnv": ".leg_env", "StochliteEnv": ".stochlite_env"}  # imported on first use

DEFAULT_INIT_ALPHA = 1.0
INIT_ALPHAS = {STOCHLITE_TASK_NAME: 0.05}
DEFAULT_REAL_RATIO = 0.5
REAL_RATIOS = {LEG_TASK_NAME: 0.9}


def task_init_alpha(name: str) -> float:
    """SAC's starting entropy temperature for task ``name``: 1.0, the usual start, except StochLite's 0.05.

    With 13 action dimensions, alpha = 1 makes the entropy bonus outweigh StochLite's 0.5-5 reward per
    step for about 10 episodes, and the robot learned nothing in them (docs/stochlite.md).
    """
    return INIT_ALPHAS.get(name, DEFAULT_INIT_ALPHA)


def task_real_ratio(name: str, requested: float = -1.0) -> float:
    """The fraction of each SAC minibatch that comes from D_ENV (the rest from D_MPC): ``requested``, or where it
    is -1 task ``name``'s: 0.5, except the leg's 0.9.

    On the simulated leg, 0.9 reached each of the returns 250, 500, 750 and 850 1,000-4,000 env steps sooner
    than 0.5, over 5 seeds, and ended at the same return (bench/README.md, Fig. 4).
    """
    return REAL_RATIOS.get(name, DEFAULT_REAL_RATIO) if requested == -1.0 else requested


@dataclass(frozen=True)
class TaskSpec:
    """What a learner needs to know about a task.

    ``termination_fn(obs, act, next_obs)`` works on torch tensors ``[..., n]`` and
    returns a bool mask ``[...]``; it is None for tasks that never terminate.
    ``reward_fn(obs, act, next_obs)`` returns the task's reward ``[...]`` from the same tensors
    where the observation determines it (the leg); None where only a learned reward can tell.
    """

    name: str
    obs_dim: int
    act_dim: int
    episode_steps: int
    termination_fn: Callable | None
    reward_fn: Callable | None = None


def make_task(
    name: str, seed: int | None = None, episode_steps: int | None = None, **kwargs: Any
) -> tuple[gymnasium.Env, TaskSpec]:
    """Build task ``name`` (one of :data:`TASK_NAMES`); ``kwargs`` go to the env.

    ``episode_steps`` overrides the episode length of any task (None: the task's
    default, 1000 for all). With a ``seed``, the env's RNG and its action space are
    seeded (MuJoCo envs through a first ``reset(seed=seed)``), so runs are reproducible.
    """
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(TASK_NAMES)}")
    from .gym_tasks import TERMINATION_FNS, make_env
    from .leg_env import LegTrackingEnv
    from .leg_observed_reward import observed_reward_fn
    from .stochlite_env import StochliteEnv, stochlite_termination_fn

    own_envs = {LEG_TASK_NAME: LegTrackingEnv, STOCHLITE_TASK_NAME: StochliteEnv}
    if name in own_envs:
        if episode_steps is not None:
            kwargs["episode_steps"] = episode_steps
        env: gymnasium.Env = own_envs[name](seed=seed, **kwargs)
        episode_steps = env.episode_steps
    else:
        if episode_steps is not None:
            kwargs["max_episode_steps"] = episode_steps
        env = make_env(name, **kwargs)
        if seed is not None:
            env.reset(seed=seed)
        episode_steps = env.spec.max_episode_steps
    if seed is not None:
        env.action_space.seed(seed)
    spec = TaskSpec(
        name=name,
        obs_dim=env.observation_space.shape[0],
        act_dim=env.action_space.shape[0],
        episode_steps=episode_steps,
        termination_fn={LEG_TASK_NAME: None, STOCHLITE_TASK_NAME: stochlite_termination_fn}.get(name)
        if name in own_envs else TERMINATION_FNS[name],
        reward_fn=observed_reward_fn(name),
    )
    return env, spec


def __getattr__(name: str) -> Any:
    """``LegTrackingEnv`` and ``StochliteEnv``, imported when first asked for (they load gymnasium and PyBullet)."""
    if name in ENV_MODULES:
        return getattr(importlib.import_module(ENV_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TASK_NAMES",
    "TaskSpec",
    "make_task",
    "task_init_alpha",
    "task_real_ratio",
    "LegTrackingEnv",
    "StochliteEnv",
    "leg_tracking_reward",
]
