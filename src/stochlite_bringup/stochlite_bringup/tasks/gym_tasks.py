"""MuJoCo benchmark tasks (gymnasium v5) and their termination functions for model rollouts.

Each ``*_termination_fn(obs, act, next_obs)`` takes torch tensors of shape ``[..., n]``
and returns a bool mask ``[...]`` that is True where ``next_obs`` is unhealthy, i.e.
where the real env returns ``terminated=True``. They mirror ``is_healthy`` of the
v5 envs with their default arguments (``exclude_current_positions_from_observation=True``,
so ``next_obs[..., 0]`` is the torso height z). HalfCheetah never terminates.
"""

from collections.abc import Callable
from typing import Any

import gymnasium
import torch

from ..task_names import GYM_TASK_NAMES

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Arguments that move the entries or ranges the termination functions rely on.
_TERMINATION_KWARGS = frozenset(
    {
        "exclude_current_positions_from_observation",
        "terminate_when_unhealthy",
        "healthy_z_range",
        "healthy_angle_range",
        "healthy_state_range",
    }
)


def hopper_termination_fn(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Hopper-v5: healthy iff ``0.7 < z``, ``-0.2 < angle < 0.2`` and ``|next_obs[1:]| < 100`` (strict).

    ``z = next_obs[0]``, ``angle = next_obs[1]``. The env checks the range on the
    unclipped velocities while the observation clips them to +-10, so a velocity
    above 100 cannot be seen here (it does not occur in practice).
    """
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        ((next_obs[..., 1:] > -100.0) & (next_obs[..., 1:] < 100.0)).all(dim=-1)
        & (z > 0.7)
        & (angle > -0.2)
        & (angle < 0.2)
    )
    return ~healthy


def walker2d_termination_fn(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Walker2d-v5: healthy iff ``0.8 < z < 2.0`` and ``-1 < angle < 1`` (strict); ``z, angle = next_obs[0:2]``."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def ant_termination_fn(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Ant-v5: healthy iff every entry is finite and ``0.2 <= z <= 1.0`` (inclusive); ``z = next_obs[0]``.

    Works with or without the contact forces (``include_cfrc_ext_in_observation``,
    default True: 105 entries, the last 78 are clipped ``cfrc_ext``); z stays entry 0.
    """
    z = next_obs[..., 0]
    healthy = torch.isfinite(next_obs).all(dim=-1) & (z >= 0.2) & (z <= 1.0)
    return ~healthy


TERMINATION_FNS: dict[str, TerminationFn | None] = {
    "HalfCheetah-v5": None,
    "Hopper-v5": hopper_termination_fn,
    "Walker2d-v5": walker2d_termination_fn,
    "Ant-v5": ant_termination_fn,
}

def make_env(name: str, **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make(name, **kwargs)`` for one of :data:`GYM_TASK_NAMES`.

    Raises ValueError for other names, and for kwargs that would make the
    termination function disagree with the env (observation layout, healthy ranges).
    """
    if name not in TERMINATION_FNS:
        raise ValueError(f"unknown MuJoCo task {name!r}; valid names: {', '.join(GYM_TASK_NAMES)}")
    changed = sorted(_TERMINATION_KWARGS.intersection(kwargs))
    if changed:
        raise ValueError(
            f"{name}: {changed} would change what terminates an episode, but the "
            "termination functions assume gymnasium's defaults; drop these arguments"
        )
    return gymnasium.make(name, **kwargs)
