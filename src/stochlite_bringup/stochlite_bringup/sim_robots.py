"""The robots that ``sim_bridge_node`` can simulate, free of ROS: the 2R leg and StochLite (PyBullet), the
gymnasium MuJoCo tasks.

Each takes one command per :meth:`step` (joint torques for the leg, 12 servo position targets for
StochLite, the env's action for a MuJoCo task), clamps it to its limits and reports joint states.
``idle_command`` is what a disarmed robot gets (zero torque; StochLite's servos hold the standing pose).
A MuJoCo task and StochLite also report their task's observation, reward and termination
(:class:`TaskFeedback`): these come from simulator internals (contact forces, the torso's velocity and
height) that joint states do not carry.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import mujoco
import numpy as np
from numpy.typing import NDArray

from .tasks.foot_path import desired_foot_position
from .tasks.leg_kinematics import inverse_kinematics
from .tasks.leg_simulation import LegSimulation
from .tasks.leg_task import JOINT_NAMES as LEG_JOINT_NAMES
from .tasks.stochlite_env import is_fallen, stochlite_observation, stochlite_step_reward
from .tasks.stochlite_gait import standing_joint_targets
from .tasks.stochlite_simulation import (CONTROL_PERIOD_S, JOINT_LOWER_RAD, JOINT_NAMES as STOCHLITE_JOINT_NAMES,
                                         JOINT_UPPER_RAD, StochliteSimulation)
from .task_names import GYM_TASK_NAMES, LEG_TASK_NAME, STOCHLITE_TASK_NAME

ONE_DOF_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


@dataclass(frozen=True)
class TaskFeedback:
    """A MuJoCo task's view of the state reached: ``step`` counts steps since the last reset."""

    step: int
    observation: NDArray[np.float32]
    reward: float
    terminated: bool


def start_joint_angles() -> NDArray[np.float64]:
    """Leg joint angles (hip, knee) [rad] that put the foot at the start of the desired path (phase 0)."""
    return inverse_kinematics(desired_foot_position(0.0))


class SimulatedLeg:
    """The 2R leg, torque-controlled, ``timestep_s`` per step; commands are [hip, knee] in N*m."""

    command_unit = "N*m"

    def __init__(self, timestep_s: float, max_torque_nm: float) -> None:
        self._sim = LegSimulation(timestep_s=timestep_s, torque_limit_nm=max_torque_nm)
        self.joint_names = LEG_JOINT_NAMES
        self.command_names = LEG_JOINT_NAMES
        self.timestep_s = timestep_s
        self.command_low = np.full(len(LEG_JOINT_NAMES), -max_torque_nm)
        self.command_high = np.full(len(LEG_JOINT_NAMES), max_torque_nm)
        self.applied = np.zeros(len(LEG_JOINT_NAMES))
        self.idle_command = np.zeros(len(LEG_JOINT_NAMES))
        self.feedback: TaskFeedback | None = None  # the leg's task is computed by the agent from joint states
        self.reset()

    @property
    def steps(self) -> int:
        """Physics steps since construction (resets do not rewind it)."""
        return self._sim.steps

    def reset(self) -> str:
        """Joints at the start of the desired foot path, at rest; returns what was done."""
        q0 = start_joint_angles()
        self._sim.reset(q0)
        self.applied = np.zeros(len(LEG_JOINT_NAMES))
        return f"joints at the start of the desired foot path, q = {np.round(q0, 4).tolist()} rad, at rest"

    def step(self, command: NDArray[np.float64]) -> None:
        """One physics step with the torques clamped to the limits; ``applied`` holds what was applied."""
        self.applied = self._sim.step(command)

    def joint_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Positions [rad], velocities [rad/s] and applied torques [N*m] in ``joint_names`` order."""
        q, qdot = self._sim.joint_state()
        return q, qdot, self.applied

    def close(self) -> None:
        self._sim.close()


class SimulatedMujocoTask:
    """A gymnasium MuJoCo task (v5, default arguments); commands are its actions, clamped to its action box.

    Joint states cover the model's hinge and slide joints (a free root joint, as Ant's, is only in the
    observation); efforts are the actuators' generalized forces at each joint.
    """

    command_unit = "action units"

    def __init__(self, name: str, seed: int | None) -> None:
        if name not in GYM_TASK_NAMES:
            raise ValueError(f"{name!r} is not a MuJoCo task; valid names: {', '.join(GYM_TASK_NAMES)}")
        # The agent ends episodes itself, so gymnasium's 1000-step limit and its checker stay out.
        self._env = gymnasium.make(name, max_episode_steps=None, disable_env_checker=True).unwrapped
        self._seed = seed
        model = self._env.model
        joints = [j for j in range(model.njnt) if int(model.jnt_type[j]) in ONE_DOF_JOINTS]
        self.joint_names = tuple(model.joint(j).name for j in joints)
        self._qpos_index = model.jnt_qposadr[joints]
        self._dof_index = model.jnt_dofadr[joints]
        self.command_names = tuple(model.actuator(a).name for a in range(model.nu))
        self.command_low = self._env.action_space.low.astype(np.float64)
        self.command_high = self._env.action_space.high.astype(np.float64)
        self.timestep_s = float(self._env.dt)
        self.idle_command = np.zeros(model.nu)
        self.steps = 0
        self.feedback: TaskFeedback | None = None
        self.reset()

    def reset(self) -> str:
        """The task's own reset (random initial state, seeded once at construction)."""
        observation, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first reset only: later resets continue its random stream
        self.feedback = TaskFeedback(0, observation.astype(np.float32), 0.0, False)
        return "the task's initial state distribution"

    def step(self, command: NDArray[np.float64]) -> None:
        """One step of the task (``frame_skip`` physics steps) with the action clamped to its box."""
        action = np.clip(command, self.command_low, self.command_high)
        observation, reward, terminated, _, _ = self._env.step(action)
        self.steps += 1
        self.feedback = TaskFeedback(self.feedback.step + 1, observation.astype(np.float32), float(reward),
                                     bool(terminated))

    def joint_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Positions [rad or m], velocities and actuator efforts of the hinge and slide joints."""
        data = self._env.data
        return (data.qpos[self._qpos_index].copy(), data.qvel[self._dof_index].copy(),
                data.qfrc_actuator[self._dof_index].copy())

    def close(self) -> None:
        self._env.close()


class SimulatedStochlite:
    """StochLite on a slope, one 10 ms control step per command; commands are 12 servo targets [rad].

    Targets are clamped to the URDF's joint limits. Reset: the standing pose plus uniform joint noise
    (``reset_noise`` rad, seeded once), as ``StochliteEnv``; observation, reward and termination come
    from the same functions as the env's.
    """

    command_unit = "rad"

    def __init__(self, seed: int | None, slope_roll_deg: float, slope_pitch_deg: float,
                 reset_noise: float = 0.02) -> None:
        self._sim = StochliteSimulation(slope_roll_deg, slope_pitch_deg)
        self._rng = np.random.default_rng(seed)
        self._reset_noise = reset_noise
        self.joint_names = self.command_names = STOCHLITE_JOINT_NAMES
        self.command_low, self.command_high = JOINT_LOWER_RAD, JOINT_UPPER_RAD
        self.timestep_s = CONTROL_PERIOD_S
        self.idle_command = standing_joint_targets()
        self.steps = 0
        self.reset()

    def reset(self) -> str:
        """The standing pose plus joint noise, dropped onto the slope."""
        q0 = standing_joint_targets() + self._rng.uniform(-self._reset_noise, self._reset_noise, len(self.joint_names))
        self.state = self._sim.reset(q0)
        self.feedback = TaskFeedback(0, stochlite_observation(self.state, self._sim), 0.0, False)
        roll, pitch = np.degrees(self._sim.slope_rpy)
        return f"standing pose +-{self._reset_noise} rad on the slope (roll {roll:g} deg, pitch {pitch:g} deg)"

    def step(self, command: NDArray[np.float64]) -> None:
        """One control step towards the targets clamped to the joint limits."""
        self.state = self._sim.step(np.clip(command, self.command_low, self.command_high))
        self.steps += 1
        observation = stochlite_observation(self.state, self._sim)
        reward = stochlite_step_reward(self.state, self._sim).total
        self.feedback = TaskFeedback(self.feedback.step + 1, observation, reward, bool(is_fallen(observation)))

    def joint_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Positions [rad], velocities [rad/s] and the step's mean servo torques [N*m]."""
        return self.state.q.copy(), self.state.qdot.copy(), self.state.torque.copy()

    def imu(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """The base's quaternion (x, y, z, w), body rates [rad/s] and specific force [m/s^2] (base frame)."""
        return self.state.quaternion, self.state.angular_velocity, self.state.linear_acceleration

    def close(self) -> None:
        self._sim.close()


def simulated_robot(robot: str, seed: int, leg_timestep_s: float, leg_max_torque_nm: float,
                    slope_roll_deg: float = 0.0, slope_pitch_deg: float = 0.0):
    """The simulator of ``robot``: the leg or StochLite in PyBullet, or a gymnasium task in MuJoCo."""
    if robot == LEG_TASK_NAME:
        return SimulatedLeg(leg_timestep_s, leg_max_torque_nm)
    if robot == STOCHLITE_TASK_NAME:
        return SimulatedStochlite(seed, slope_roll_deg, slope_pitch_deg)
    return SimulatedMujocoTask(robot, seed)
