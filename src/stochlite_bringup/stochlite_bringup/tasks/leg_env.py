"""``LegTrackingEnv``: torque-controlled 2R leg tracking a half-ellipse (paper section V).

Physics: :class:`LegSimulation` (PyBullet, 500 Hz), one physics step per control step.
Observation, reward (eq. 15 on the foot position and velocity after the step against the
desired path at that time) and episode length: :class:`LegTask`. See docs/leg_task.md.
"""

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from .foot_path import STEP_LENGTH_M, desired_foot_position
from .leg_kinematics import inverse_kinematics
from .leg_simulation import (
    MAX_JOINT_VELOCITY_RAD_PER_S,
    STALL_TORQUE_NM,
    TIMESTEP_S,
    LegSimulation,
    leg_urdf_path,
)
from .leg_task import JOINT_VELOCITY_SCALE_RAD_PER_S, LegSample, LegTask

DEFAULT_MAX_TORQUE_NM = 10.0

__all__ = ["DEFAULT_MAX_TORQUE_NM", "TIMESTEP_S", "LegTrackingEnv", "leg_urdf_path"]


class LegTrackingEnv(gymnasium.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Track the half-ellipse foot path with hip and knee torques.

    Observation, reward and episode length are :class:`LegTask`'s, on the simulated joint state
    after each step. Observation (float32, 10): ``q1, q2`` [rad]; ``qdot1, qdot2`` [rad/s / 10];
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
        self._task = LegTask(episode_steps, frequency_hz)
        if not 0.0 < max_torque <= STALL_TORQUE_NM:
            raise ValueError(f"max_torque={max_torque} N*m must be in (0, {STALL_TORQUE_NM}]")
        if reset_noise < 0.0:
            raise ValueError(f"reset_noise={reset_noise} rad must be >= 0")
        self.max_torque = max_torque
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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Put the foot on ``p_d(phase0)`` (IK) plus uniform joint noise, at rest."""
        super().reset(seed=seed)
        phase0 = float((options or {}).get("phase0", 0.0)) % 1.0
        self._task.reset(phase0)
        q0 = inverse_kinematics(desired_foot_position(phase0))
        q0 = q0 + self.np_random.uniform(-self.reset_noise, self.reset_noise, size=2)
        self._sim.reset(q0)
        sample = self._sample()
        return sample.obs, self._info(sample)

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
        truncated = self._task.advance()
        sample = self._sample()
        return sample.obs, sample.reward, False, truncated, self._info(sample)

    def close(self) -> None:
        """Disconnect the PyBullet client (safe to call twice)."""
        self._sim.close()

    @property
    def episode_steps(self) -> int:
        """Steps after which an episode is truncated."""
        return self._task.episode_steps

    @property
    def frequency_hz(self) -> float:
        """Cycles of the desired path per second."""
        return self._task.frequency_hz

    @property
    def phase(self) -> float:
        """Current phase of the desired path in [0, 1)."""
        return self._task.phase(self._task.steps * TIMESTEP_S)

    @property
    def joint_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Current joint angles ``q`` [rad] and rates ``qdot`` [rad/s], (hip, knee)."""
        return self._sim.joint_state()

    def _sample(self) -> LegSample:
        q, qdot = self._sim.joint_state()
        return self._task.sample(q, qdot, self._task.steps * TIMESTEP_S)

    @staticmethod
    def _info(sample: LegSample) -> dict[str, Any]:
        return {
            "foot_position": sample.foot_position,
            "desired_foot_position": sample.desired_foot_position,
            "foot_velocity": sample.foot_velocity,
            "desired_foot_velocity": sample.desired_foot_velocity,
            "tracking_error_m": float(np.linalg.norm(sample.foot_position - sample.desired_foot_position)),
            "phase": sample.phase,
        }
