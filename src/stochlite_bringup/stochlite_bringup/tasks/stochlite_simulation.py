"""``StochliteSimulation``: PyBullet world of the StochLite quadruped on a tilted plane, free of task and ROS.

One DIRECT client per instance, gravity 9.81 m/s², physics at 10 kHz. The ground is an
infinite plane through the origin turned by the slope (:func:`slope_quaternion`). The 12
servos are position-controlled by :func:`servo_torque` (PD, torque clip) evaluated at every
physics step; :meth:`StochliteSimulation.step` holds one set of joint targets for
``PHYSICS_STEPS_PER_CONTROL`` = 100 physics steps (100 Hz). The explicit PD law is stable only
for ``kd dt / I < 2``; the knee's joint-space inertia is 0.00054 kg·m², so ``dt <= 0.1 ms``
(at the source's 5 kHz the servos chatter: 88 W at rest). See docs/stochlite.md.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..package_files import package_file
from .quiet_pybullet import pybullet
from .stochlite_gait import LEG_NAMES

PHYSICS_TIMESTEP_S = 0.0001  # 10 kHz: the PD law's stability bound (the source: 5 kHz; see docs)
PHYSICS_STEPS_PER_CONTROL = 100  # policy at 100 Hz
CONTROL_PERIOD_S = PHYSICS_TIMESTEP_S * PHYSICS_STEPS_PER_CONTROL
GRAVITY_M_PER_S2 = 9.81
KP_NM_PER_RAD = 400.0
KD_NM_S_PER_RAD = 10.0
TORQUE_LIMIT_NM = 7.0
FOOT_FRICTION = 1.0
DROP_HEIGHT_M = 0.28  # base origin above the plane when dropped (feet at 0.25 + 0.015 m)
MAX_SLOPE_DEG = 30.0
JOINT_NAMES = tuple(f"{leg}_{joint}" for leg in LEG_NAMES for joint in ("abduction", "hip", "knee"))
JOINT_LOWER_RAD = np.tile([-0.5, -1.57, -2.7], len(LEG_NAMES))  # the URDF's limits, JOINT_NAMES order
JOINT_UPPER_RAD = np.tile([0.5, 1.57, 0.0], len(LEG_NAMES))


def stochlite_urdf_path() -> Path:
    """Path of ``stochlite.urdf`` in the source tree or in a colcon install (share/)."""
    return package_file("urdf", "stochlite.urdf")


def slope_quaternion(slope_roll_deg: float, slope_pitch_deg: float) -> tuple[float, float, float, float]:
    """Orientation (x, y, z, w) of the ground: roll and pitch in degrees, as Euler angles of the plane's frame.

    A robot standing on the plane has this roll and pitch; pitch < 0 raises the ground ahead (+x).
    """
    for name, value in (("slope_roll_deg", slope_roll_deg), ("slope_pitch_deg", slope_pitch_deg)):
        if not abs(value) <= MAX_SLOPE_DEG:
            raise ValueError(f"{name}={value} must be within ±{MAX_SLOPE_DEG} degrees")
    return tuple(pybullet.getQuaternionFromEuler((np.radians(slope_roll_deg), np.radians(slope_pitch_deg), 0.0)))


def servo_torque(target: ArrayLike, q: ArrayLike, qdot: ArrayLike) -> NDArray[np.float64]:
    """Servo law: ``clip(kp (q* - q) - kd qdot, ±7 N*m)`` with kp 400 N*m/rad, kd 10 N*m*s/rad."""
    torque = KP_NM_PER_RAD * (np.asarray(target) - np.asarray(q)) - KD_NM_S_PER_RAD * np.asarray(qdot)
    return np.clip(torque, -TORQUE_LIMIT_NM, TORQUE_LIMIT_NM)


@dataclass(frozen=True)
class StochliteState:
    """Measured state after a control step (world frame unless named otherwise; SI units).

    ``rpy``: base roll, pitch, yaw [rad] (the IMU's orientation); ``angular_velocity``: base
    rates in the base frame [rad/s] (the IMU's gyro); ``linear_acceleration``: specific force in
    the base frame [m/s²] (an accelerometer: +9.81 up at rest); ``torque``: mean applied
    torque over the control step [N*m]; ``power_w``: mean of ``sum |tau * qdot|`` over it.
    """

    position: NDArray[np.float64]
    quaternion: NDArray[np.float64]
    rpy: NDArray[np.float64]
    linear_velocity: NDArray[np.float64]
    angular_velocity: NDArray[np.float64]
    linear_acceleration: NDArray[np.float64]
    q: NDArray[np.float64]
    qdot: NDArray[np.float64]
    torque: NDArray[np.float64]
    power_w: float


class StochliteSimulation:
    """StochLite on a plane of the given slope; ``step(joint_targets)`` runs one 10 ms control step."""

    def __init__(self, slope_roll_deg: float = 0.0, slope_pitch_deg: float = 0.0) -> None:
        slope_quaternion(slope_roll_deg, slope_pitch_deg)  # ValueError before a client exists
        self._client = pybullet.connect(pybullet.DIRECT)
        pybullet.setGravity(0.0, 0.0, -GRAVITY_M_PER_S2, physicsClientId=self._client)
        pybullet.setTimeStep(PHYSICS_TIMESTEP_S, physicsClientId=self._client)
        plane_shape = pybullet.createCollisionShape(pybullet.GEOM_PLANE, physicsClientId=self._client)
        self._plane = pybullet.createMultiBody(0.0, plane_shape, physicsClientId=self._client)
        pybullet.changeDynamics(self._plane, -1, lateralFriction=FOOT_FRICTION, physicsClientId=self._client)
        self._body = pybullet.loadURDF(str(stochlite_urdf_path()), flags=pybullet.URDF_USE_INERTIA_FROM_FILE,
                                       physicsClientId=self._client)
        names = {pybullet.getJointInfo(self._body, j, physicsClientId=self._client)[1].decode(): j
                 for j in range(pybullet.getNumJoints(self._body, physicsClientId=self._client))}
        self.joint_indices = tuple(names[n] for n in JOINT_NAMES)
        self.foot_links = tuple(names[f"{leg}_foot_fixed"] for leg in LEG_NAMES)
        for joint in self.joint_indices:
            pybullet.setJointMotorControl2(self._body, joint, pybullet.VELOCITY_CONTROL, force=0.0,
                                           physicsClientId=self._client)
            # No maxJointVelocity clamp: PyBullet's clamp at the servos' 10 rad/s threw the robot
            # (base at 10 m/s, fallen in 8 steps under random actions); see docs/stochlite.md.
            pybullet.changeDynamics(self._body, joint, linearDamping=0.0, angularDamping=0.0,
                                    physicsClientId=self._client)
        self.time_s = 0.0
        self._previous_velocity = np.zeros(3)
        self._last_torque = np.zeros(len(JOINT_NAMES))
        self._last_power_w = 0.0
        self.set_slope(slope_roll_deg, slope_pitch_deg)

    def set_slope(self, slope_roll_deg: float, slope_pitch_deg: float) -> None:
        """Turn the ground plane to the slope (degrees); takes effect for the next :meth:`reset`."""
        self.slope_quaternion = slope_quaternion(slope_roll_deg, slope_pitch_deg)
        self.slope_rpy = np.radians([slope_roll_deg, slope_pitch_deg])
        pybullet.resetBasePositionAndOrientation(self._plane, (0.0, 0.0, 0.0), self.slope_quaternion,
                                                 physicsClientId=self._client)

    def reset(self, q: ArrayLike, yaw: float = 0.0) -> StochliteState:
        """Drop the robot, joints at ``q`` at rest, ``DROP_HEIGHT_M`` above the plane's origin along its normal."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(q)):
            raise ValueError(f"q={q!r} must be {len(JOINT_NAMES)} finite joint angles [rad] in the order {JOINT_NAMES}")
        normal = np.array(pybullet.getMatrixFromQuaternion(self.slope_quaternion)).reshape(3, 3)[:, 2]
        orientation = pybullet.multiplyTransforms((0, 0, 0), self.slope_quaternion, (0, 0, 0),
                                                  pybullet.getQuaternionFromEuler((0.0, 0.0, yaw)))[1]
        pybullet.resetBasePositionAndOrientation(self._body, DROP_HEIGHT_M * normal, orientation,
                                                 physicsClientId=self._client)
        pybullet.resetBaseVelocity(self._body, (0, 0, 0), (0, 0, 0), physicsClientId=self._client)
        for joint, angle in zip(self.joint_indices, q):
            pybullet.resetJointState(self._body, joint, float(angle), 0.0, physicsClientId=self._client)
        self.time_s = 0.0
        self._previous_velocity = np.zeros(3)
        self._last_torque = np.zeros(len(JOINT_NAMES))
        self._last_power_w = 0.0
        return self.state()

    def step(self, joint_targets: ArrayLike) -> StochliteState:
        """Hold the 12 ``joint_targets`` [rad] with the servo law for one control step; return the state after it."""
        target = np.asarray(joint_targets, dtype=np.float64)
        if target.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(target)):
            raise ValueError(f"joint_targets={target!r} must be {len(JOINT_NAMES)} finite angles [rad] "
                             f"in the order {JOINT_NAMES}")
        self._previous_velocity = self._base_velocity()[0]
        torque_sum, power_sum = np.zeros(len(JOINT_NAMES)), 0.0
        for _ in range(PHYSICS_STEPS_PER_CONTROL):
            q, qdot = self._joints()
            torque = servo_torque(target, q, qdot)
            pybullet.setJointMotorControlArray(self._body, self.joint_indices, pybullet.TORQUE_CONTROL,
                                               forces=torque, physicsClientId=self._client)
            pybullet.stepSimulation(physicsClientId=self._client)
            torque_sum += torque
            power_sum += float(np.sum(np.abs(torque * qdot)))
        self.time_s += CONTROL_PERIOD_S
        self._last_torque = torque_sum / PHYSICS_STEPS_PER_CONTROL
        self._last_power_w = power_sum / PHYSICS_STEPS_PER_CONTROL
        return self.state()

    def state(self) -> StochliteState:
        """The current :class:`StochliteState` (acceleration from the last control step's velocity change)."""
        position, quaternion = pybullet.getBasePositionAndOrientation(self._body, physicsClientId=self._client)
        rotation = np.array(pybullet.getMatrixFromQuaternion(quaternion)).reshape(3, 3)
        velocity, omega = self._base_velocity()
        acceleration = (velocity - self._previous_velocity) / CONTROL_PERIOD_S + (0.0, 0.0, GRAVITY_M_PER_S2)
        q, qdot = self._joints()
        return StochliteState(
            position=np.array(position), quaternion=np.array(quaternion),
            rpy=np.array(pybullet.getEulerFromQuaternion(quaternion)), linear_velocity=velocity,
            angular_velocity=rotation.T @ omega, linear_acceleration=rotation.T @ acceleration,
            q=q, qdot=qdot, torque=self._last_torque.copy(), power_w=self._last_power_w)

    def height_above_ground(self, position: ArrayLike) -> float:
        """Distance [m] of a world point above the ground plane, along its normal."""
        normal = np.array(pybullet.getMatrixFromQuaternion(self.slope_quaternion)).reshape(3, 3)[:, 2]
        return float(np.dot(normal, position))

    def foot_positions(self) -> NDArray[np.float64]:
        """World positions ``[4, 3]`` of the foot sphere centres (fl, fr, bl, br)."""
        states = pybullet.getLinkStates(self._body, self.foot_links, physicsClientId=self._client)
        return np.array([s[4] for s in states])

    def render(self, width: int = 320, height: int = 240) -> NDArray[np.uint8]:
        """RGB image ``[height, width, 3]`` from a camera beside the robot (software renderer)."""
        target = pybullet.getBasePositionAndOrientation(self._body, physicsClientId=self._client)[0]
        view = pybullet.computeViewMatrixFromYawPitchRoll(target, 0.9, 60.0, -20.0, 0.0, 2)
        projection = pybullet.computeProjectionMatrixFOV(60.0, width / height, 0.05, 10.0)
        image = pybullet.getCameraImage(width, height, view, projection, renderer=pybullet.ER_TINY_RENDERER,
                                        physicsClientId=self._client)[2]
        return np.asarray(image, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]

    def _base_velocity(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        linear, angular = pybullet.getBaseVelocity(self._body, physicsClientId=self._client)
        return np.array(linear), np.array(angular)

    def _joints(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        states = pybullet.getJointStates(self._body, self.joint_indices, physicsClientId=self._client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def close(self) -> None:
        """Disconnect the PyBullet client (safe to call twice)."""
        if self._client >= 0:
            pybullet.disconnect(physicsClientId=self._client)
            self._client = -1
