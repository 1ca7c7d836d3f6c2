"""Reward of the StochLite walking task: forward progress, upright torso, low energy.

``r = FORWARD_WEIGHT min(v_fwd, MAX_SPEED) + UPRIGHT_WEIGHT cos(tilt) - ENERGY_WEIGHT P`` per control
step, with ``v_fwd`` the base velocity along the slope's uphill x axis [m/s] (capped at the trot's
top speed, so that falling forward pays no more than walking), ``tilt`` the angle between the
base's z axis and the ground normal, and ``P`` the mean servo power ``sum |tau qdot|`` [W].
Standing still upright on the ground earns 0.5; walking at 0.1 m/s adds 1.0.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

FORWARD_WEIGHT = 10.0  # per m/s
MAX_SPEED_M_PER_S = 0.5  # the trot's top speed: 0.1 m step per 0.2 s stance
UPRIGHT_WEIGHT = 0.5
ENERGY_WEIGHT = 0.001  # per W


@dataclass(frozen=True)
class StochliteReward:
    """The reward's terms (already weighted and signed) and their sum."""

    forward: float
    upright: float
    energy: float

    @property
    def total(self) -> float:
        return self.forward + self.upright + self.energy


def forward_progress_reward(velocity: ArrayLike, forward_axis: ArrayLike) -> float:
    """``FORWARD_WEIGHT * min(v . e_fwd, MAX_SPEED)``: world velocity [m/s] along the unit ``forward_axis``."""
    return FORWARD_WEIGHT * min(float(np.dot(velocity, forward_axis)), MAX_SPEED_M_PER_S)


def upright_reward(base_up: ArrayLike, ground_normal: ArrayLike) -> float:
    """``UPRIGHT_WEIGHT * cos(tilt)``: unit base z axis against the unit ground normal (0.5 upright, <0 upside down)."""
    return UPRIGHT_WEIGHT * float(np.dot(base_up, ground_normal))


def energy_penalty(power_w: float) -> float:
    """``-ENERGY_WEIGHT * P`` for the servos' mean mechanical power ``P >= 0`` [W]."""
    if power_w < 0.0:
        raise ValueError(f"power_w={power_w} must be >= 0 (a sum of |tau * qdot|)")
    return -ENERGY_WEIGHT * power_w


def stochlite_reward(velocity: ArrayLike, base_up: ArrayLike, power_w: float, ground_frame: ArrayLike) -> StochliteReward:
    """All terms; ``ground_frame`` is the ground's rotation matrix (columns: uphill x, y, normal)."""
    frame = np.asarray(ground_frame, dtype=np.float64)
    return StochliteReward(forward_progress_reward(velocity, frame[:, 0]), upright_reward(base_up, frame[:, 2]),
                           energy_penalty(power_w))
