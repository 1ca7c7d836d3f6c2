"""Trot trajectory generator of the StochLite task, shaped by the policy's action.

Every leg's foot follows a half-ellipse in its leg frame (:mod:`stochlite_kinematics`) with its
own phase ``theta_i = 2 pi f t + PHASE_OFFSETS[i]`` (legs fl, fr, bl, br; diagonal pairs
together: a trot). With ``c`` the shifted centre and ``L`` the step length
(:func:`foot_target`):

* swing, ``theta mod 2 pi`` in [0, pi): ``x = c_x - L/2 cos theta``, ``z = c_z + h sin theta``
  (lift-off at the back ``c_x - L/2``, apex ``c_z + h`` at pi/2, touch-down at the front);
* stance, [pi, 2 pi): ``x = c_x - L/2 cos theta``, ``z = c_z`` (flat bottom, front to back);
* ``y = c_y`` throughout.

``c = (0, side * ABDUCTION_OFFSET_M, CENTRE_Z_M) + shift``; the action sets the shifts and
``L`` (:func:`gait_command`, documented in docs/stochlite.md).
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .stochlite_kinematics import ABDUCTION_OFFSET_M, clamp_to_reach, leg_inverse_kinematics

LEG_NAMES = ("fl", "fr", "bl", "br")
LEG_SIDES = (1, -1, 1, -1)  # +1 left, -1 right
PHASE_OFFSETS = (0.0, np.pi, np.pi, 0.0)  # trot: fl with br, fr with bl
FREQUENCY_HZ = 2.5
CENTRE_Z_M = -0.25
CLEARANCE_M = 0.07  # middle of the 0.06-0.08 m range
X_SHIFT_M = 0.02  # action scale of the shifts: 0.02 m (the source: 0.1 m; see docs/stochlite.md)
Y_SHIFT_M = 0.02
Z_SHIFT_M = 0.02
MAX_STEP_LENGTH_M = 0.1
ACTION_DIM = 3 * len(LEG_NAMES) + 1  # x, y, z shift of each leg, then the step length


@dataclass(frozen=True)
class GaitCommand:
    """The generator's parameters: per-leg centre shifts ``[4, 3]`` (m) and the step length (m)."""

    shifts: NDArray[np.float64]
    step_length_m: float


def gait_command(action: ArrayLike) -> GaitCommand:
    """Map a policy action in [-1, 1]^13 (clipped) to shifts and step length.

    ``action[3 i + 0, 1, 2]``: x, y, z shift of leg ``LEG_NAMES[i]``, times 0.02 m each;
    ``action[12]``: step length ``(a + 1) / 2 * 0.1`` m (0 m at -1, 0.05 m at 0, 0.1 m at +1).
    """
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
        raise ValueError(f"action={action!r} must be {ACTION_DIM} finite numbers in [-1, 1] (4 x xyz shift, step length)")
    action = np.clip(action, -1.0, 1.0)
    shifts = action[:12].reshape(4, 3) * (X_SHIFT_M, Y_SHIFT_M, Z_SHIFT_M)
    return GaitCommand(shifts, float((action[12] + 1.0) * 0.5 * MAX_STEP_LENGTH_M))


def leg_phases(time_s: float) -> NDArray[np.float64]:
    """Phase ``theta_i`` in [0, 2 pi) of each leg ``time_s`` after the gait started."""
    return np.mod(2.0 * np.pi * FREQUENCY_HZ * time_s + np.asarray(PHASE_OFFSETS), 2.0 * np.pi)


def foot_target(theta: ArrayLike, centre: ArrayLike, step_length_m: float) -> NDArray[np.float64]:
    """Half-ellipse point ``(x, y, z)`` at phase ``theta`` [rad] around ``centre`` (leg frame, m)."""
    if not 0.0 <= step_length_m <= MAX_STEP_LENGTH_M:
        raise ValueError(f"step_length_m={step_length_m} must be in [0, {MAX_STEP_LENGTH_M}] m")
    theta = np.mod(np.asarray(theta, dtype=np.float64), 2.0 * np.pi)
    centre = np.asarray(centre, dtype=np.float64)
    x = centre[..., 0] - 0.5 * step_length_m * np.cos(theta)
    z = centre[..., 2] + np.where(theta < np.pi, CLEARANCE_M * np.sin(theta), 0.0)
    return np.stack((x, np.broadcast_to(centre[..., 1], x.shape), z), axis=-1)


def nominal_centres() -> NDArray[np.float64]:
    """Unshifted ellipse centres ``[4, 3]``: below each hip, ``CENTRE_Z_M`` down."""
    return np.array([(0.0, side * ABDUCTION_OFFSET_M, CENTRE_Z_M) for side in LEG_SIDES])


def foot_targets(time_s: float, command: GaitCommand) -> NDArray[np.float64]:
    """Every foot's target ``[4, 3]`` (leg frames, m) at ``time_s``, pulled within reach."""
    points = foot_target(leg_phases(time_s), nominal_centres() + command.shifts, command.step_length_m)
    return np.stack([clamp_to_reach(p, side) for p, side in zip(points, LEG_SIDES)])


def joint_targets(feet: ArrayLike) -> NDArray[np.float64]:
    """The 12 joint angles [rad] (per leg: abduction, hip, knee) placing the feet ``[4, 3]``."""
    feet = np.asarray(feet, dtype=np.float64)
    if feet.shape != (4, 3):
        raise ValueError(f"feet has shape {feet.shape}; expected (4, 3): one (x, y, z) per leg {LEG_NAMES}")
    return np.concatenate([leg_inverse_kinematics(p, side) for p, side in zip(feet, LEG_SIDES)])


def standing_joint_targets() -> NDArray[np.float64]:
    """The 12 joint angles of the standing pose: every foot at its ellipse centre."""
    return joint_targets(nominal_centres())
