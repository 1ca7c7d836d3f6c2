"""``StochliteEnv``: the StochLite quadruped walking up a slope, the policy shaping a trot (paper section V).

Physics: :class:`StochliteSimulation` (PyBullet, 1 kHz, servo PD law, 100 Hz control).
Action -> trot generator -> leg IK -> joint targets: :mod:`stochlite_gait`. Reward:
:mod:`stochlite_reward`. Episodes truncate after 1000 steps (10 s) and terminate when
:func:`is_fallen`. See docs/stochlite.md.
"""

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from .quiet_pybullet import pybullet
from .stochlite_gait import ACTION_DIM, foot_targets, gait_command, joint_targets, leg_phases, standing_joint_targets
from .stochlite_reward import StochliteReward, stochlite_reward
from .stochlite_simulation import CONTROL_PERIOD_S, StochliteSimulation, StochliteState

OBS_DIM = 14
MAX_TILT_RAD = 0.6  # fallen: base roll or pitch this far from the slope's
MIN_HEIGHT_M = 0.12  # fallen: base this low above the ground (standing: 0.26 m)
OBSERVATION_NAMES = ("roll", "pitch", "yaw", "vx", "vy", "vz", "wx", "wy", "wz", "height",
                     "slope_roll", "slope_pitch", "sin_phase", "cos_phase")


def is_fallen(obs: Any) -> Any:
    """Fallen mask of observations ``[..., 14]`` (numpy or torch): tilted beyond 0.6 rad or lower than 0.12 m.

    ``|roll - slope_roll| > 0.6`` or ``|pitch - slope_pitch| > 0.6`` or ``height < 0.12``; only
    elementwise operators, so the env and :func:`stochlite_termination_fn` share it.
    """
    roll_off = abs(obs[..., 0] - obs[..., 10])
    pitch_off = abs(obs[..., 1] - obs[..., 11])
    return (roll_off > MAX_TILT_RAD) | (pitch_off > MAX_TILT_RAD) | (obs[..., 9] < MIN_HEIGHT_M)


def stochlite_observation(state: StochliteState, sim: StochliteSimulation) -> NDArray[np.float32]:
    """The 14 values of :data:`OBSERVATION_NAMES` for ``state``, at the simulation's time since reset."""
    phase = leg_phases(sim.time_s)[0]
    return np.concatenate((state.rpy, state.linear_velocity, state.angular_velocity,
                           (sim.height_above_ground(state.position),), sim.slope_rpy,
                           (np.sin(phase), np.cos(phase)))).astype(np.float32)


def ground_frame(sim: StochliteSimulation) -> NDArray[np.float64]:
    """The slope's axes as columns (x uphill-forward, y left, z normal) in the world frame."""
    return np.array(pybullet.getMatrixFromQuaternion(sim.slope_quaternion)).reshape(3, 3)


def stochlite_step_reward(state: StochliteState, sim: StochliteSimulation) -> StochliteReward:
    """The reward terms of the control step that reached ``state`` (``stochlite_reward``)."""
    rotation = np.array(pybullet.getMatrixFromQuaternion(state.quaternion)).reshape(3, 3)
    return stochlite_reward(state.linear_velocity, rotation[:, 2], state.power_w, ground_frame(sim))


def stochlite_termination_fn(obs: Any, act: Any, next_obs: Any) -> Any:
    """Model-rollout termination on torch tensors ``[..., 14]``: :func:`is_fallen` of ``next_obs``."""
    return is_fallen(next_obs)


class StochliteEnv(gymnasium.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Walk forward (uphill along +x) on a plane of slope ``(slope_roll_deg, slope_pitch_deg)``.

    Action: Box(-1, 1, (13,)), see :func:`gait_command` (4 x xyz shifts, step length).
    Observation (float32, 14): base roll, pitch, yaw [rad]; base velocity in the world [m/s];
    base rates in the base frame [rad/s]; base height above the ground [m]; the ground's roll
    and pitch [rad]; sin, cos of the front-left leg's gait phase. ``info``: the reward terms,
    ``forward_speed`` [m/s] and ``position`` (world, m). Reset options:
    ``{"slope_roll_deg", "slope_pitch_deg"}`` change the slope from this episode on.
    Defaults: slope pitch -5 degrees (the ground rises 5 degrees ahead).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1.0 / CONTROL_PERIOD_S)}
    dt = CONTROL_PERIOD_S

    def __init__(self, episode_steps: int = 1000, slope_roll_deg: float = 0.0, slope_pitch_deg: float = -5.0,
                 reset_noise: float = 0.02, seed: int | None = None, render_mode: str | None = None) -> None:
        if episode_steps < 1:
            raise ValueError(f"episode_steps={episode_steps} must be >= 1")
        if reset_noise < 0.0:
            raise ValueError(f"reset_noise={reset_noise} rad must be >= 0")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} must be None or 'rgb_array'")
        self.episode_steps = episode_steps
        self.reset_noise = reset_noise
        self.render_mode = render_mode
        if seed is not None:
            super().reset(seed=seed)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        high = np.array([np.pi, np.pi, np.pi, 5, 5, 5, 20, 20, 20, 1, 1, 1, 1, 1], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self._sim = StochliteSimulation(slope_roll_deg, slope_pitch_deg)
        self._steps = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Drop the robot in its standing pose plus uniform joint noise, on the (new) slope."""
        super().reset(seed=seed)
        options = options or {}
        if "slope_roll_deg" in options or "slope_pitch_deg" in options:
            roll, pitch = np.degrees(self._sim.slope_rpy)
            self._sim.set_slope(float(options.get("slope_roll_deg", roll)), float(options.get("slope_pitch_deg", pitch)))
        q0 = standing_joint_targets() + self.np_random.uniform(-self.reset_noise, self.reset_noise, 12)
        self._steps = 0
        state = self._sim.reset(q0)
        return stochlite_observation(state, self._sim), {"position": state.position}

    def step(self, action: NDArray[np.float32]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Shape the trot with ``action`` and run one 10 ms control step."""
        command = gait_command(action)  # ValueError on a bad shape or NaN/inf
        state = self._sim.step(joint_targets(foot_targets(self._sim.time_s, command)))
        self._steps += 1
        obs = stochlite_observation(state, self._sim)
        reward = stochlite_step_reward(state, self._sim)
        info = {"forward": reward.forward, "upright": reward.upright, "energy": reward.energy,
                "forward_speed": float(np.dot(state.linear_velocity, ground_frame(self._sim)[:, 0])),
                "position": state.position}
        return obs, reward.total, bool(is_fallen(obs)), self._steps >= self.episode_steps, info

    def render(self) -> NDArray[np.uint8] | None:
        """An RGB frame (software renderer) when ``render_mode == 'rgb_array'``."""
        return self._sim.render() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        """Disconnect the PyBullet client (safe to call twice)."""
        self._sim.close()
