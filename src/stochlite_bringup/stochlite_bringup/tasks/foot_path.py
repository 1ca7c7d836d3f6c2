"""Desired foot path of the leg task: a half-ellipse with a flat bottom.

Positions ``(x, z)`` in metres in the hip frame (x forward, z up); all figures are
proxies (Stoch 3 simulation, see docs/leg_task.md). ``phase`` in [0, 1) is one cycle.

* Swing, phase in [0, 0.5): the upper arc from back ``(-L/2)`` to front ``(+L/2)``,
  ``x = -L/2 cos s, z = z_c + h sin s`` with the eased angle
  ``s = theta - sin(2 theta) / 2``, ``theta = 2 pi phase``.
* Stance, phase in [0.5, 1): the flat bottom ``z = z_c`` from front to back,
  ``x = -L/2 cos theta``.

The path has corners where arc and line meet, so any continuous velocity must
vanish there: ``ds/dtheta = 1 - cos 2 theta`` and ``sin theta`` are both zero at the
corners, which makes the desired velocity continuous over the whole cycle (only
the acceleration jumps). Peak speed is ``2 pi f L`` (0.85 m/s at 1 Hz) mid-swing.
Functions broadcast over the shape of ``phase``.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

CENTRE_X_M = 0.0
CENTRE_Z_M = -0.40  # ellipse centre = flat bottom, 0.4 m below the hip
STEP_LENGTH_M = 0.136
CLEARANCE_M = 0.05


def _angles(phase: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    theta = 2.0 * np.pi * np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    swing = theta < np.pi
    s = theta - 0.5 * np.sin(2.0 * theta)
    return theta, s, swing


def desired_foot_position(phase: ArrayLike) -> NDArray[np.float64]:
    """``p_d(phase)``: desired foot position ``(x, z)`` in m, shape ``[..., 2]``."""
    theta, s, swing = _angles(phase)
    half = 0.5 * STEP_LENGTH_M
    x = CENTRE_X_M - half * np.where(swing, np.cos(s), np.cos(theta))
    z = CENTRE_Z_M + np.where(swing, CLEARANCE_M * np.sin(s), 0.0)
    return np.stack((x, z), axis=-1)


def desired_foot_velocity(phase: ArrayLike, frequency_hz: float) -> NDArray[np.float64]:
    """``pdot_d(phase)``: time derivative of ``p_d`` in m/s at ``frequency_hz`` cycles/s."""
    theta, s, swing = _angles(phase)
    theta_rate = 2.0 * np.pi * frequency_hz
    s_rate = (1.0 - np.cos(2.0 * theta)) * theta_rate
    half = 0.5 * STEP_LENGTH_M
    xdot = half * np.where(swing, np.sin(s) * s_rate, np.sin(theta) * theta_rate)
    zdot = np.where(swing, CLEARANCE_M * np.cos(s) * s_rate, 0.0)
    return np.stack((xdot, zdot), axis=-1)
