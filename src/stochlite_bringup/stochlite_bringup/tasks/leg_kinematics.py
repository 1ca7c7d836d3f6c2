"""Planar kinematics of the 2R leg in ``urdf/leg_2r.urdf``.

Frame: hip at the origin, x forward, z up; positions are ``(x, z)`` in metres.
Both joints turn about -y, so ``q = (0, 0)`` hangs straight down and positive
angles swing the foot forward. Link lengths are proxies (see docs/leg_task.md).
All functions broadcast over leading dimensions (``q[..., 2]`` / ``p[..., 2]``). Forward kinematics
and foot velocity take numpy-convertible input (computed in float64) or torch tensors (computed in
their dtype, so that the planner can score imagined states with the same code).
"""

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

Array = Union[NDArray[np.float64], "torch.Tensor"]  # what as_array gives: float64 numpy, or torch in its dtype

THIGH_LENGTH_M = 0.297  # proxy (Stoch 3 leg)
SHANK_LENGTH_M = 0.275  # proxy, hip-to-foot shank + foot


def as_array(x: Any) -> tuple[Array, ModuleType]:
    """``x`` as a torch tensor (unchanged) or a float64 numpy array, with its module (torch or numpy)."""
    torch = sys.modules.get("torch")  # a tensor implies torch is imported; numpy callers never import it
    if torch is not None and isinstance(x, torch.Tensor):
        return x, torch
    return np.asarray(x, dtype=np.float64), np


def forward_kinematics(q: ArrayLike) -> Array:
    """Foot position ``(x, z)`` for joint angles ``q = (q1, q2)`` in rad."""
    q, xp = as_array(q)
    q1, q12 = q[..., 0], q[..., 0] + q[..., 1]
    x = THIGH_LENGTH_M * xp.sin(q1) + SHANK_LENGTH_M * xp.sin(q12)
    z = -THIGH_LENGTH_M * xp.cos(q1) - SHANK_LENGTH_M * xp.cos(q12)
    return xp.stack((x, z), -1)


def foot_jacobian(q: ArrayLike) -> Array:
    """Jacobian ``d(x, z)/d(q1, q2)``, shape ``[..., 2, 2]``; foot velocity is ``J @ qdot``."""
    q, xp = as_array(q)
    q1, q12 = q[..., 0], q[..., 0] + q[..., 1]
    c1, s1 = THIGH_LENGTH_M * xp.cos(q1), THIGH_LENGTH_M * xp.sin(q1)
    c12, s12 = SHANK_LENGTH_M * xp.cos(q12), SHANK_LENGTH_M * xp.sin(q12)
    row_x = xp.stack((c1 + c12, c12), -1)
    row_z = xp.stack((s1 + s12, s12), -1)
    return xp.stack((row_x, row_z), -2)


def foot_velocity(q: ArrayLike, qdot: ArrayLike) -> Array:
    """Foot velocity ``(xdot, zdot)`` in m/s from joint angles and rates."""
    qdot, _ = as_array(qdot)
    return (foot_jacobian(q) @ qdot[..., None])[..., 0]


def inverse_kinematics(p: ArrayLike) -> NDArray[np.float64]:
    """Joint angles reaching foot position ``p = (x, z)``, knee-forward branch (``q2 <= 0``).

    The knee branch matches the URDF knee limits ``[-2.6, 0]`` rad.
    Raises ValueError if ``p`` is out of reach.
    """
    p = np.asarray(p, dtype=np.float64)
    x, z = p[..., 0], p[..., 1]
    cos_q2 = (x**2 + z**2 - THIGH_LENGTH_M**2 - SHANK_LENGTH_M**2) / (
        2.0 * THIGH_LENGTH_M * SHANK_LENGTH_M
    )
    if np.any(np.abs(cos_q2) > 1.0):
        raise ValueError(
            f"foot position {p.tolist()} is out of the leg's reach "
            f"({abs(THIGH_LENGTH_M - SHANK_LENGTH_M):.3f}..{THIGH_LENGTH_M + SHANK_LENGTH_M:.3f} m from the hip)"
        )
    q2 = -np.arccos(cos_q2)
    q1 = np.arctan2(x, -z) - np.arctan2(
        SHANK_LENGTH_M * np.sin(q2), THIGH_LENGTH_M + SHANK_LENGTH_M * np.cos(q2)
    )
    return np.stack((q1, q2), axis=-1)
