"""The leg tracking task seen from a joint state: observation, reward (eq. 15), episode length.

ROS-free and simulator-free: the agent node turns each measured joint state and the time since
the episode started into its observation and reward, and :class:`LegTrackingEnv` does the same
with its simulated state after each physics step, so the ROS graph and the single-process
trainer train the same task.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .foot_path import CENTRE_X_M, CENTRE_Z_M, desired_foot_position, desired_foot_velocity
from .leg_kinematics import foot_velocity, forward_kinematics
from .leg_reward import leg_tracking_reward

JOINT_NAMES = ("hip", "knee")  # joint order of q, qdot and of the action
OBS_DIM = 10
ACT_DIM = 2
JOINT_VELOCITY_SCALE_RAD_PER_S = 10.0  # observation: qdot / 10
DESIRED_POSITION_SCALE_M = 0.1  # observation: (p_d - centre) in dm
DEFAULT_EPISODE_STEPS = 1000
DEFAULT_FREQUENCY_HZ = 1.0


@dataclass(frozen=True)
class LegSample:
    """The task's view of one joint state: observation, reward, foot positions (m) and velocities (m/s)."""

    obs: NDArray[np.float32]
    reward: float
    phase: float
    foot_position: NDArray[np.float64]
    desired_foot_position: NDArray[np.float64]
    foot_velocity: NDArray[np.float64]
    desired_foot_velocity: NDArray[np.float64]


class LegTask:
    """Observation and reward from ``(q, qdot, t)`` plus episode bookkeeping.

    Observation (float32, 10): ``q1, q2`` [rad]; ``qdot1, qdot2`` [rad/s / 10];
    ``p_d - centre`` (x, z) [dm]; ``pdot_d`` (x, z) [m/s]; ``sin, cos(2 pi phase)``, with
    ``phase = (phase0 + frequency_hz * t) mod 1`` and ``t`` the seconds since the episode started
    at ``phase0`` of the path (0: its start). The reward of a transition is eq. 15 on the state it
    ends in.
    """

    def __init__(
        self, episode_steps: int = DEFAULT_EPISODE_STEPS, frequency_hz: float = DEFAULT_FREQUENCY_HZ
    ) -> None:
        if episode_steps < 1:
            raise ValueError(f"episode_steps={episode_steps} must be >= 1")
        if frequency_hz <= 0.0:
            raise ValueError(f"frequency_hz={frequency_hz} must be > 0")
        self.episode_steps = episode_steps
        self.frequency_hz = frequency_hz
        self.steps = 0
        self.phase0 = 0.0

    def reset(self, phase0: float = 0.0) -> None:
        """Start a new episode at ``phase0`` in [0, 1) of the path."""
        self.steps = 0
        self.phase0 = phase0

    def advance(self) -> bool:
        """Count one control step; True when the episode is truncated (``episode_steps`` reached)."""
        self.steps += 1
        return self.steps >= self.episode_steps

    def phase(self, elapsed_s: float) -> float:
        """Phase in [0, 1) of the desired path ``elapsed_s`` after the episode started."""
        return (self.phase0 + self.frequency_hz * elapsed_s) % 1.0

    def sample(self, q: ArrayLike, qdot: ArrayLike, elapsed_s: float) -> LegSample:
        """Observation, reward and foot positions and velocities for joint state ``q, qdot`` at ``elapsed_s``."""
        q = np.asarray(q, dtype=np.float64)
        qdot = np.asarray(qdot, dtype=np.float64)
        phase = self.phase(elapsed_s)
        p, p_d = forward_kinematics(q), desired_foot_position(phase)
        v, v_d = foot_velocity(q, qdot), desired_foot_velocity(phase, self.frequency_hz)
        reward = leg_tracking_reward(p, p_d, v, v_d)
        angle = 2.0 * np.pi * phase
        obs = np.concatenate(
            (
                q,
                qdot / JOINT_VELOCITY_SCALE_RAD_PER_S,
                (p_d - (CENTRE_X_M, CENTRE_Z_M)) / DESIRED_POSITION_SCALE_M,
                v_d,
                (np.sin(angle), np.cos(angle)),
            )
        ).astype(np.float32)
        return LegSample(obs, float(reward), phase, p, p_d, v, v_d)
