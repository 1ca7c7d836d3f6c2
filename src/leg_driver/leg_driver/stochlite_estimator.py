"""StochLite's task state on hardware: the env's 14-value observation, reward and termination from servos + IMU.

ROS-free core of ``stochlite_estimator_node``. Per control step, from the 12 joint positions and
velocities, the servos' torques and the IMU (quaternion, gyro):

* roll, pitch, yaw: the IMU's quaternion (PyBullet's Euler convention, as the env);
* base velocity (world frame): leg odometry of the stance feet: a stance foot's contact point does
  not move in the world, so ``v_base = -R (v_rel + omega x p)`` for its position ``p`` in the base
  frame (``stochlite_kinematics`` forward kinematics, ``v_rel = J qdot`` plus the rolling of the foot
  sphere), averaged over the stance feet (those within ``STANCE_BAND_M`` of the lowest foot along
  the ground normal);
* body rates: the gyro (base frame, as the env);
* height: the stance feet's contact points' mean depth below the base along the ground normal;
* slope roll and pitch: stated by the operator (parameters);
* gait phase: ``leg_phases(elapsed)[0]`` since the episode's first step, as the agent computes it;

the reward is :func:`stochlite_reward` with the estimated velocity and the servos' power, and
``terminated`` is :func:`is_fallen` of the observation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from stochlite_bringup.tasks.quiet_pybullet import pybullet
from stochlite_bringup.tasks.stochlite_env import is_fallen
from stochlite_bringup.tasks.stochlite_gait import LEG_SIDES, leg_phases
from stochlite_bringup.tasks.stochlite_kinematics import leg_forward_kinematics
from stochlite_bringup.tasks.stochlite_reward import stochlite_reward
from stochlite_bringup.tasks.stochlite_simulation import slope_quaternion

ABDUCTION_JOINTS_M = np.array([(0.167, 0.096, 0.0), (0.167, -0.096, 0.0), (-0.167, 0.096, 0.0),
                               (-0.167, -0.096, 0.0)])  # urdf/stochlite.urdf, fl fr bl br, base frame
FOOT_RADIUS_M = 0.015  # urdf/stochlite.urdf: foot sphere
STANCE_BAND_M = 0.01  # a foot this close to the lowest one (along the ground normal) is in stance
JACOBIAN_STEP_RAD = 1e-6


@dataclass(frozen=True)
class TaskEstimate:
    observation: NDArray[np.float32]  # stochlite_env.OBSERVATION_NAMES
    reward: float
    terminated: bool
    stance: NDArray[np.bool_]  # fl fr bl br


def rotation_matrix(quaternion: ArrayLike) -> NDArray[np.float64]:
    """Rotation (base -> world) of a unit quaternion (x, y, z, w)."""
    return np.array(pybullet.getMatrixFromQuaternion(tuple(float(v) for v in quaternion))).reshape(3, 3)


def foot_positions(q: ArrayLike) -> NDArray[np.float64]:
    """Foot sphere centres ``[4, 3]`` in the base frame for the 12 joint angles [rad]."""
    legs = np.asarray(q, dtype=np.float64).reshape(4, 3)
    return ABDUCTION_JOINTS_M + np.stack([leg_forward_kinematics(leg, side) for leg, side in zip(legs, LEG_SIDES)])


def foot_velocities(q: ArrayLike, qdot: ArrayLike) -> NDArray[np.float64]:
    """Foot velocities ``[4, 3]`` relative to the base (base frame) from joint rates: ``J qdot`` (central differences)."""
    legs, rates = np.asarray(q, dtype=np.float64).reshape(4, 3), np.asarray(qdot, dtype=np.float64).reshape(4, 3)
    out = np.zeros((4, 3))
    for i, (leg, rate, side) in enumerate(zip(legs, rates, LEG_SIDES)):
        for j in range(3):
            step = np.zeros(3)
            step[j] = JACOBIAN_STEP_RAD
            column = (leg_forward_kinematics(leg + step, side) - leg_forward_kinematics(leg - step, side))
            out[i] += column / (2.0 * JACOBIAN_STEP_RAD) * rate[j]
    return out


def stance_feet(feet_world: NDArray[np.float64], normal: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Feet within ``STANCE_BAND_M`` of the lowest along the ground ``normal`` (world-frame offsets from the base)."""
    heights = feet_world @ normal
    return heights <= heights.min() + STANCE_BAND_M


def rolling_velocity(q: ArrayLike, qdot: ArrayLike, gyro: ArrayLike, down: NDArray[np.float64]) -> NDArray[np.float64]:
    """Velocity ``[4, 3]`` (base frame) of each foot's contact point relative to its sphere centre as the foot rolls.

    The shank turns at ``omega + (hip' + knee') y_leg`` (``y_leg``: the hip axis, turned by the abduction),
    and the contact point sits ``FOOT_RADIUS_M`` along ``down`` (the ground's inward normal, base frame).
    """
    legs, rates = np.asarray(q, dtype=np.float64).reshape(4, 3), np.asarray(qdot, dtype=np.float64).reshape(4, 3)
    axes = np.stack((np.zeros(4), np.cos(legs[:, 0]), np.sin(legs[:, 0])), axis=-1)
    shank_rates = np.asarray(gyro, dtype=np.float64) + (rates[:, 1] + rates[:, 2])[:, None] * axes
    return np.cross(shank_rates, FOOT_RADIUS_M * down)


def leg_odometry_velocity(rotation: NDArray[np.float64], contacts: NDArray[np.float64],
                          contacts_velocity: NDArray[np.float64], gyro: ArrayLike,
                          stance: NDArray[np.bool_]) -> NDArray[np.float64]:
    """World-frame base velocity if the ``stance`` feet's contact points stand still: mean of ``-R (v_rel + omega x p)``."""
    omega = np.asarray(gyro, dtype=np.float64)
    per_foot = -(contacts_velocity[stance] + np.cross(omega, contacts[stance])) @ rotation.T
    return per_foot.mean(axis=0)


class StochliteEstimator:
    """Turns joint states + IMU into :class:`TaskEstimate`; :meth:`reset` marks an episode's first step."""

    def __init__(self, slope_roll_deg: float = 0.0, slope_pitch_deg: float = 0.0) -> None:
        self.ground = rotation_matrix(slope_quaternion(slope_roll_deg, slope_pitch_deg))
        self.slope_rpy = np.radians([slope_roll_deg, slope_pitch_deg])
        self._start_s: float | None = None

    def reset(self) -> None:
        self._start_s = None

    def update(self, time_s: float, q: ArrayLike, qdot: ArrayLike, torque: ArrayLike, quaternion: ArrayLike,
               gyro: ArrayLike) -> TaskEstimate:
        """The estimate at ``time_s`` [s, the joint state's stamp]; the first call after :meth:`reset` is phase 0."""
        if self._start_s is None:
            self._start_s = time_s
        q, qdot = np.asarray(q, dtype=np.float64), np.asarray(qdot, dtype=np.float64)
        rotation = rotation_matrix(quaternion)
        feet = foot_positions(q)
        normal = self.ground[:, 2]
        stance = stance_feet(feet @ rotation.T, normal)
        down = -(rotation.T @ normal)
        contacts = feet + FOOT_RADIUS_M * down
        contacts_velocity = foot_velocities(q, qdot) + rolling_velocity(q, qdot, gyro, down)
        velocity = leg_odometry_velocity(rotation, contacts, contacts_velocity, gyro, stance)
        height = float(-np.mean((contacts[stance] @ rotation.T) @ normal))
        phase = leg_phases(time_s - self._start_s)[0]
        rpy = pybullet.getEulerFromQuaternion(tuple(float(v) for v in quaternion))
        observation = np.concatenate((rpy, velocity, np.asarray(gyro, dtype=np.float64), (height,), self.slope_rpy,
                                      (np.sin(phase), np.cos(phase)))).astype(np.float32)
        power_w = float(np.sum(np.abs(np.asarray(torque, dtype=np.float64) * qdot)))
        reward = stochlite_reward(velocity, rotation[:, 2], power_w, self.ground).total
        return TaskEstimate(observation, reward, bool(is_fallen(observation)), stance)
