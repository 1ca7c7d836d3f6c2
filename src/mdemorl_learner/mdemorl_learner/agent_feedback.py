"""What the agent reads from the robot and sends back, per kind of robot, without ROS.

* the leg: joint states, from which the agent computes the observation and eq. 15's reward
  (``LegTask``); its commands are torques, ``action * max_torque`` N*m;
* a MuJoCo task: the sim bridge's ``TaskStep`` (the task's own observation, reward and termination);
  its commands are the task's actions, the policy's [-1, 1] mapped onto the action box;
* StochLite: ``TaskStep`` too; its commands are 12 servo targets from the trot generator shaped by the
  action at the episode time of the state (``stochlite_gait``), as ``StochliteEnv.step`` computes them.

``command_topic`` names the robot's command topic; ``idle_command`` is what a stopping agent sends.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from stochlite_bringup.graph_topics import EFFORT_COMMANDS_TOPIC, JOINT_COMMANDS_TOPIC
from stochlite_bringup.tasks.dimensions import task_dimensions
from stochlite_bringup.tasks.leg_task import ACT_DIM, JOINT_NAMES, OBS_DIM, LegTask
from stochlite_bringup.tasks.stochlite_gait import (GaitCommand, foot_targets, gait_command, joint_targets,
                                                    standing_joint_targets)

from .policy_runner import TaskSample


def joint_state_arrays(
    names: Sequence[str], position: Sequence[float], velocity: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``q, qdot`` in :data:`JOINT_NAMES` order from a JointState's fields; ValueError if malformed."""
    names = list(names)
    if len(position) != len(names) or len(velocity) != len(names):
        raise ValueError(
            f"joint state has {len(names)} names, {len(position)} positions and {len(velocity)} velocities"
        )
    try:
        index = [names.index(joint) for joint in JOINT_NAMES]
    except ValueError:
        raise ValueError(f"joint state names {names} lack one of {list(JOINT_NAMES)}") from None
    q = np.asarray(position, dtype=np.float64)[index]
    qdot = np.asarray(velocity, dtype=np.float64)[index]
    if not (np.isfinite(q).all() and np.isfinite(qdot).all()):
        raise ValueError(f"joint state is not finite: position {list(position)}, velocity {list(velocity)}")
    return q, qdot


class LegFeedback:
    """The leg: samples from joint states (hip, knee), torque commands ``action * max_torque``."""

    obs_dim, act_dim = OBS_DIM, ACT_DIM
    command_topic = EFFORT_COMMANDS_TOPIC

    def __init__(self, max_torque: float) -> None:
        self.max_torque = max_torque
        self._task = LegTask()

    def sample(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
               time_s: float) -> TaskSample:
        """Observation and reward of a joint state ``time_s`` into the episode; ValueError if malformed."""
        q, qdot = joint_state_arrays(names, position, velocity)
        leg = self._task.sample(q, qdot, time_s)
        return TaskSample(leg.obs, leg.reward, time_s, False, leg.foot_position, leg.desired_foot_position)

    def command(self, action: NDArray, time_s: float) -> list[float]:
        return (self.max_torque * np.asarray(action, np.float64)).tolist()

    def idle_command(self) -> list[float]:
        return [0.0] * self.act_dim


class TaskStepFeedback:
    """A MuJoCo task: samples from the sim bridge's TaskStep, commands in the task's action box."""

    command_topic = EFFORT_COMMANDS_TOPIC

    def __init__(self, robot: str) -> None:
        self._dims = task_dimensions(robot)
        self.obs_dim, self.act_dim = self._dims.obs_dim, self._dims.act_dim

    def sample(self, observation: Sequence[float], reward: float, terminated: bool, time_s: float) -> TaskSample:
        """The task's own view of the state; ValueError if the observation has the wrong size or is not finite."""
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != (self.obs_dim,):
            raise ValueError(f"task step has {obs.size} observation values, expected {self.obs_dim}")
        if not (np.isfinite(obs).all() and np.isfinite(reward)):
            raise ValueError(f"task step is not finite: reward {reward}, observation {obs.tolist()}")
        return TaskSample(obs, float(reward), time_s, bool(terminated))

    def command(self, action: NDArray, time_s: float) -> list[float]:
        return self._dims.command(action).tolist()

    def idle_command(self) -> list[float]:
        return self._dims.command(np.zeros(self.act_dim)).tolist()


class StochliteFeedback(TaskStepFeedback):
    """StochLite: samples from TaskStep; commands are servo targets of the trot shaped by the action."""

    command_topic = JOINT_COMMANDS_TOPIC

    def gait(self, action: NDArray) -> GaitCommand:
        """The generator's shifts and step length for a policy action (``stochlite_gait.gait_command``)."""
        return gait_command(np.asarray(action, np.float64))

    def command(self, action: NDArray, time_s: float) -> list[float]:
        """Servo targets [rad] of the feet's positions ``time_s`` into the episode."""
        return joint_targets(foot_targets(time_s, self.gait(action))).tolist()

    def idle_command(self) -> list[float]:
        return standing_joint_targets().tolist()
