"""Leg kinematics of ``urdf/stochlite.urdf``: abduction about x, hip and knee about y.

Leg frame: origin at the leg's abduction joint, axes parallel to the base's (x forward, y left,
z up); positions in metres. With the abduction angle ``a`` the hip plane turns about x; in that
plane the foot sits ``side * ABDUCTION_OFFSET_M`` sideways (``side`` +1 for left legs, -1 for
right) and, with hip ``h`` and knee ``k`` about +y,
``x' = -l1 sin h - l2 sin(h + k)``, ``z' = -l1 cos h - l2 cos(h + k)``.
``q = (0, 0, 0)`` hangs straight down; ``k <= 0`` bends the knee backward (the URDF's limits).
Functions broadcast over leading dimensions (``q[..., 3]``, ``p[..., 3]``).
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

ABDUCTION_OFFSET_M = 0.096  # lab IK figure; 0.052 + 2 x 0.023 m of the public model (R)
THIGH_LENGTH_M = 0.146
SHANK_LENGTH_M = 0.172  # lab IK figure, between the 0.169 and 0.175 m of the models
REACH_M = THIGH_LENGTH_M + SHANK_LENGTH_M


def _check_side(side: int) -> None:
    if side not in (1, -1):
        raise ValueError(f"side={side!r} must be +1 (left leg) or -1 (right leg)")


def planar_foot_position(hip: ArrayLike, knee: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Foot ``(x', z')`` in the hip plane for hip and knee angles [rad] about +y."""
    hip = np.asarray(hip, dtype=np.float64)
    total = hip + np.asarray(knee, dtype=np.float64)
    x = -THIGH_LENGTH_M * np.sin(hip) - SHANK_LENGTH_M * np.sin(total)
    z = -THIGH_LENGTH_M * np.cos(hip) - SHANK_LENGTH_M * np.cos(total)
    return x, z


def leg_forward_kinematics(q: ArrayLike, side: int) -> NDArray[np.float64]:
    """Foot position ``(x, y, z)`` in the leg frame for ``q = (abduction, hip, knee)`` [rad]."""
    _check_side(side)
    q = np.asarray(q, dtype=np.float64)
    x, z_plane = planar_foot_position(q[..., 1], q[..., 2])
    y_plane = side * ABDUCTION_OFFSET_M
    c, s = np.cos(q[..., 0]), np.sin(q[..., 0])
    return np.stack((x, y_plane * c - z_plane * s, y_plane * s + z_plane * c), axis=-1)


def leg_inverse_kinematics(p: ArrayLike, side: int) -> NDArray[np.float64]:
    """Joint angles ``(abduction, hip, knee)`` putting the foot at ``p = (x, y, z)`` (leg frame, m).

    Foot below the hip plane, knee bent backward (``knee <= 0``). Raises ValueError when ``p``
    is out of reach: closer than the abduction offset to the x axis, or more than
    ``REACH_M`` from the hip in the hip plane (see :func:`clamp_to_reach`).
    """
    _check_side(side)
    p = np.asarray(p, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    radial_sq = y**2 + z**2 - ABDUCTION_OFFSET_M**2
    if np.any(radial_sq < 0.0):
        raise ValueError(f"foot position {p.tolist()} is closer than {ABDUCTION_OFFSET_M} m to the abduction axis")
    z_plane = -np.sqrt(radial_sq)
    abduction = np.arctan2(z, y) - np.arctan2(z_plane, side * ABDUCTION_OFFSET_M)
    abduction = (abduction + np.pi) % (2.0 * np.pi) - np.pi
    cos_knee = (x**2 + z_plane**2 - THIGH_LENGTH_M**2 - SHANK_LENGTH_M**2) / (2.0 * THIGH_LENGTH_M * SHANK_LENGTH_M)
    if np.any(np.abs(cos_knee) > 1.0):
        raise ValueError(
            f"foot position {p.tolist()} is out of the leg's reach "
            f"({abs(THIGH_LENGTH_M - SHANK_LENGTH_M):.3f}..{REACH_M:.3f} m from the hip); use clamp_to_reach"
        )
    knee = -np.arccos(cos_knee)
    hip = np.arctan2(-x, -z_plane) - np.arctan2(SHANK_LENGTH_M * np.sin(knee), THIGH_LENGTH_M + SHANK_LENGTH_M * np.cos(knee))
    return np.stack((abduction, hip, knee), axis=-1)


def clamp_to_reach(p: ArrayLike, side: int, margin: float = 0.98) -> NDArray[np.float64]:
    """``p`` pulled toward the hip, in the hip plane, to at most ``margin * REACH_M`` from it."""
    _check_side(side)
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin={margin} must be in (0, 1]")
    p = np.array(p, dtype=np.float64)
    y, z = p[..., 1], p[..., 2]
    radial = np.sqrt(np.maximum(y**2 + z**2 - ABDUCTION_OFFSET_M**2, 0.0))
    planar = np.hypot(p[..., 0], radial)
    scale = np.minimum(1.0, margin * REACH_M / np.maximum(planar, 1e-9))
    x_new, radial_new = p[..., 0] * scale, radial * scale
    # keep the direction of (y, z) about the abduction axis: rotate the in-plane point back
    angle = np.arctan2(z, y) - np.arctan2(-radial, side * ABDUCTION_OFFSET_M)
    c, s = np.cos(angle), np.sin(angle)
    y_plane = side * ABDUCTION_OFFSET_M
    return np.stack((x_new, y_plane * c + radial_new * s, y_plane * s - radial_new * c), axis=-1)
