"""What the policy runner in a driver's loop needs to know of its robot (ROS-free, torch-free).

A profile turns the loop's state into the task's :class:`~mdemorl_learner.policy_runner.TaskSample` at an
episode time, an action into the loop's command, and starts the reset that begins each episode:

* :class:`LegProfile`: the observation and eq. 15's reward of the joint state (``LegTask``); the command is the
  torque ``action * action_scale_nm``; the reset homes the joints to the start of the foot path.
* :class:`StochliteProfile`: the env's observation, reward and termination estimated from the servos and the
  IMU (:class:`~leg_driver.stochlite_estimator.StochliteEstimator`); the command is the 12 servo targets of the
  trot that the action shapes, at the episode time; the reset stands the robot up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mdemorl_learner.policy_runner import TaskSample
from numpy.typing import NDArray
from stochlite_bringup.tasks.leg_task import ACT_DIM as LEG_ACT_DIM
from stochlite_bringup.tasks.leg_task import OBS_DIM as LEG_OBS_DIM
from stochlite_bringup.tasks.leg_task import LegTask


@dataclass
class LegProfile:
    """The 2R leg under torque control."""

    action_scale_nm: float  # joint torque of action 1.0
    home_target: tuple[float, float]  # rad: the start of the desired foot path
    home_timeout_s: float
    obs_dim: int = LEG_OBS_DIM
    act_dim: int = LEG_ACT_DIM
    _task: LegTask = field(default_factory=LegTask, repr=False)

    def start_episode(self) -> None:
        """Nothing to reset: the foot path's phase is the episode time."""

    def sample(self, state, time_s: float) -> TaskSample:
        leg = self._task.sample(state.position, state.velocity, time_s)
        return TaskSample(leg.obs, leg.reward, time_s, False, leg.foot_position, leg.desired_foot_position)

    def command(self, action: NDArray[np.float32], time_s: float) -> tuple[float, ...]:
        return tuple(float(a) * self.action_scale_nm for a in action)

    def start_reset(self, loop):
        return loop.start_home(self.home_target, self.home_timeout_s)


class StochliteProfile:
    """StochLite's 12 position servos and IMU; the slope is the operator's statement (as the estimator node's)."""

    def __init__(self, slope_roll_deg: float, slope_pitch_deg: float, reset_timeout_s: float) -> None:
        from stochlite_bringup.tasks.stochlite_env import OBS_DIM
        from stochlite_bringup.tasks.stochlite_gait import (ACTION_DIM, foot_targets, gait_command, joint_targets,
                                                            standing_joint_targets)

        from .stochlite_estimator import StochliteEstimator

        self._estimator = StochliteEstimator(slope_roll_deg, slope_pitch_deg)
        self._gait_command, self._foot_targets, self._joint_targets = gait_command, foot_targets, joint_targets
        self._standing = standing_joint_targets()
        self.reset_timeout_s = reset_timeout_s
        self.obs_dim, self.act_dim = OBS_DIM, ACTION_DIM
        self.gait = None  # the trot generator's command of the newest action (GaitCommand)

    def start_episode(self) -> None:
        self._estimator.reset()

    def sample(self, state, time_s: float) -> TaskSample:
        estimate = self._estimator.update(time_s, state.position, state.velocity, state.torque, state.quaternion,
                                          state.gyro)
        return TaskSample(estimate.observation, estimate.reward, time_s, estimate.terminated)

    def command(self, action: NDArray[np.float32], time_s: float) -> tuple[float, ...]:
        self.gait = self._gait_command(np.asarray(action, np.float64))
        return tuple(self._joint_targets(self._foot_targets(time_s, self.gait)).tolist())

    def start_reset(self, loop):
        return loop.start_reset(self._standing, self.reset_timeout_s)
