"""Tracking reward of the leg task (paper eq. 15)."""

import numpy as np
from numpy.typing import ArrayLike

from .leg_kinematics import Array, as_array

POSITION_UNIT_M = 0.1  # positions in dm: 10 cm error -> exp(-1)
VELOCITY_UNIT_M_PER_S = 1.0  # velocities in m/s: 1 m/s error -> exp(-1)


def leg_tracking_reward(
    p: ArrayLike, p_d: ArrayLike, v: ArrayLike, v_d: ArrayLike
) -> float | Array:
    """Eq. 15: ``0.8 exp(-|p - p_d|^2) + 0.2 exp(-|pdot - pdot_d|^2)``.

    Inputs are in SI (m, m/s), shape ``[..., 2]``; the last axis is reduced. Errors are
    measured in dm and m/s, the scale of the path (13.6 cm step, speeds up to 0.85 m/s),
    so both terms vary over the whole workspace and an untrained policy still gets a
    signal. In cm an error of a few cm would already give ~0 and SAC measured no
    progress in 12,000 steps; in metres the reward would be flat. Returns 1 exactly on
    the trajectory; 3 cm error keeps 0.73 of the position term. Torch tensors in give a tensor out
    (the planner's imagined rewards); anything else is computed in float64.
    """
    p, xp = as_array(p)
    position_error = (p - p_d) / POSITION_UNIT_M
    velocity_error = (as_array(v)[0] - v_d) / VELOCITY_UNIT_M_PER_S
    reward = (0.8 * xp.exp(-(position_error**2).sum(-1))
              + 0.2 * xp.exp(-(velocity_error**2).sum(-1)))  # eq. 15
    return float(reward) if xp is np and reward.ndim == 0 else reward
