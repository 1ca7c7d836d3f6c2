"""``LegTrackingEnv``: torque-controlled 2R leg tracking a half-ellipse (paper section V).

Physics: :class:`LegSimulation` (PyBullet, 500 Hz), one physics step per control step. The
reward is eq. 15 (:func:`leg_tracking_reward`) on the foot position and velocity
after the step against the desired path at that time. See docs/leg_task.md.
"""

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from .foot_path import (
    CENTRE_X_M,
    CENTRE_Z_M,
    STEP_LENGTH_M,
    desired_foot_position,
    desired_foot_velocity,
)
from .leg_kinematics import forward_kinematics, foot_velocity, inverse_kinematics
from .leg_reward import leg_tracking_reward
from .leg_simulation import (
    MAX_JOINT_VELOCITY_RAD_PER_S,
    STALL_TORQUE_NM,
    TIMESTEP_S,
    LegSimulation,
    leg_urdf_path,
)

DEFAULT_MAX_TORQUE_NM = 10.0
JOINT_VELOCITY_SCALE_RAD_PER_S = 10.0  # observation: qdot / 10
DESIRED_POSITION_SCALE_M = 0.1  # observation: (p_d - centre) in dm

__all__ = ["DEFAULT_MAX_TORQUE_NM", "TIMESTEP_S", "LegTrackingEnv", "leg_urdf_path"]


class LegTrackingEnv(gymnasium.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Track the half-ellipse foot path with hip and knee torques.

    Observation (float32, 10): ``q1, q2`` [rad]; ``qdot1, qdot2`` [rad/s / 10];
    ``p_d - centre`` (x, z) [dm]; ``pdot_d`` (x, z) [m/s]; ``sin, cos(2 pi phase)``.
    All refer to the current time. Action: Box(-1, 1, (2,)) times ``max_torque``
    [N*m] for (hip, knee); out-of-range values are clipped, NaN/inf raise ValueError.
    Episodes never terminate and truncate after ``episode_steps`` steps.
    ``info``: ``foot_position``, ``desired_foot_position``, ``foot_velocity``,
    ``desired_foot_velocity`` (m, m/s), ``tracking_error_m`` and ``phase``.
    Reset options: ``{"phase0": float}`` (start phase, default 0).
    """

    metadata = {"render_modes": [], "render_fps": round(1.0 / TIMESTEP_S)}
    dt = TIMESTEP_S  # control period [s], as on the MuJoCo envs

    def __init__(
        self,
        episode_steps: int = 1000,
        max_torque: float = DEFAULT_MAX_TORQUE_NM,
        frequency_hz: float = 1.0,
        reset_noise: float = 0.02,
        seed: int | None = None,
    ) -> None:
        if episode_steps < 1:
            raise ValueError(f"episode_steps={episode_steps} must be >= 1")
        if not 0.0 < max_torque <= STALL_TORQUE_NM:
            raise ValueError(f"max_torque={max_torque} N*m must be in (0, {STALL_TORQUE_NM}]")
        if frequency_hz <= 0.0:
            raise ValueError(f"frequency_hz={frequency_hz} must be > 0")
        if reset_noise < 0.0:
            raise ValueError(f"reset_noise={reset_noise} rad must be >= 0")
        self.episode_steps = episode_steps
        self.max_torque = max_torque
        self.frequency_hz = frequency_hz
        self.reset_noise = reset_noise
        if seed is not None:
            super().reset(seed=seed)

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        qdot_bound = 1.5 * MAX_JOINT_VELOCITY_RAD_PER_S / JOINT_VELOCITY_SCALE_RAD_PER_S
        speed_bound = 1.1 * 2.0 * np.pi * frequency_hz * STEP_LENGTH_M  # > peak desired speed
        high = np.array(
            [np.pi, np.pi, qdot_bound, qdot_bound, 1, 1, speed_bound, speed_bound, 1, 1], dtype=np.float32
        )
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

        self._sim = LegSimulation(TIMESTEP_S, max_torque)
        self._phase0 = 0.0
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Put the foot on ``p_d(phase0)`` (IK) plus uniform joint noise, at rest."""
        super().reset(seed=seed)
        self._phase0 = float((options or {}).get("phase0", 0.0)) % 1.0
        self._steps = 0
        q0 = inverse_kinematics(desired_foot_position(self._phase0))
        q0 = q0 + self.np_random.uniform(-self.reset_noise, self.reset_noise, size=2)
        self._sim.reset(q0)
        q, qdot = self._sim.joint_state()
        info = self._info(q, qdot)
        return self._observation(q, qdot, info), info

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Apply ``action * max_torque`` for one 2 ms physics step."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(
                f"action={action!r} must be 2 finite numbers (hip, knee) in [-1, 1]; "
                "check the policy output for NaN/inf before calling step()"
            )
        self._sim.step(self.max_torque * np.clip(action, -1.0, 1.0))
        self._steps += 1
        q, qdot = self._sim.joint_state()
        info = self._info(q, qdot)
        reward = leg_tracking_reward(
            info["foot_position"],
            info["desired_foot_position"],
            info["foot_velocity"],
            info["desired_foot_velocity"],
        )
        truncated = self._steps >= self.episode_steps
        return self._observation(q, qdot, info), reward, False, truncated, info

    def close(self) -> None:
        """Disconnect the PyBullet client (safe to call twice)."""
        self._sim.close()

    @property
    def phase(self) -> float:
        """Current phase of the desired path in [0, 1)."""
        return (self._phase0 + self.frequency_hz * self._steps * TIMESTEP_S) % 1.0

    @staticmethod
    def _observation(
        q: NDArray[np.float64], qdot: NDArray[np.float64], info: dict[str, Any]
    ) -> NDArray[np.float32]:
        angle = 2.0 * np.pi * info["phase"]
        p_d = (info["desired_foot_position"] - (CENTRE_X_M, CENTRE_Z_M)) / DESIRED_POSITION_SCALE_M
        return np.concatenate(
            (
                q,
                qdot / JOINT_VELOCITY_SCALE_RAD_PER_S,
                p_d,
                info["desired_foot_velocity"],
                (np.sin(angle), np.cos(angle)),
            )
        ).astype(np.float32)

    def _info(self, q: NDArray[np.float64], qdot: NDArray[np.float64]) -> dict[str, Any]:
        phase = self.phase
        p, p_d = forward_kinematics(q), desired_foot_position(phase)
        return {
            "foot_position": p,
            "desired_foot_position": p_d,
            "foot_velocity": foot_velocity(q, qdot),
            "desired_foot_velocity": desired_foot_velocity(phase, self.frequency_hz),
            "tracking_error_m": float(np.linalg.norm(p - p_d)),
            "phase": phase,
        }
