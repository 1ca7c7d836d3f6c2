"""``LegSimulation``: PyBullet world of the torque-controlled 2R leg on its rig, free of task and ROS.

One DIRECT client per instance (instances coexist), gravity 9.81 m/s², hip fixed, no
ground. Default velocity motors off; each :meth:`LegSimulation.step` applies joint
torques [N*m] with ``TORQUE_CONTROL`` for one physics step. See docs/leg_task.md.
"""

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..package_files import package_file
from .quiet_pybullet import pybullet

TIMESTEP_S = 0.002  # 500 Hz physics
GRAVITY_M_PER_S2 = 9.81
STALL_TORQUE_NM = 32.0  # proxy actuator stall torque at the joint (URDF effort limit)
MAX_JOINT_VELOCITY_RAD_PER_S = 28.0  # proxy no-load speed (URDF velocity limit)
JOINT_INDICES = (0, 1)


def leg_urdf_path() -> Path:
    """Path of ``leg_2r.urdf`` in the source tree or in a colcon install (share/)."""
    return package_file("urdf", "leg_2r.urdf")


class LegSimulation:
    """The 2R leg at ``timestep_s`` per step with torques clamped to ``±torque_limit_nm``.

    ``steps`` counts physics steps since construction; :meth:`reset` does not rewind it,
    so ``steps * timestep_s`` is a monotonic simulation time.
    """

    def __init__(self, timestep_s: float = TIMESTEP_S, torque_limit_nm: float = STALL_TORQUE_NM) -> None:
        if not timestep_s > 0.0:
            raise ValueError(f"timestep_s={timestep_s} must be > 0")
        if not 0.0 < torque_limit_nm <= STALL_TORQUE_NM:
            raise ValueError(f"torque_limit_nm={torque_limit_nm} N*m must be in (0, {STALL_TORQUE_NM}]")
        self.timestep_s = timestep_s
        self.torque_limit_nm = torque_limit_nm
        self.steps = 0
        self._client = pybullet.connect(pybullet.DIRECT)
        pybullet.setGravity(0.0, 0.0, -GRAVITY_M_PER_S2, physicsClientId=self._client)
        pybullet.setTimeStep(timestep_s, physicsClientId=self._client)
        self._body = pybullet.loadURDF(
            str(leg_urdf_path()),
            useFixedBase=True,
            flags=pybullet.URDF_USE_INERTIA_FROM_FILE,
            physicsClientId=self._client,
        )
        for joint in JOINT_INDICES:
            pybullet.setJointMotorControl2(
                self._body, joint, pybullet.VELOCITY_CONTROL, force=0.0, physicsClientId=self._client
            )
            pybullet.changeDynamics(
                self._body,
                joint,
                linearDamping=0.0,
                angularDamping=0.0,
                maxJointVelocity=MAX_JOINT_VELOCITY_RAD_PER_S,
                physicsClientId=self._client,
            )

    def reset(self, q: ArrayLike) -> None:
        """Put the joints at angles ``q = (hip, knee)`` [rad], at rest."""
        self.set_state(q, (0.0, 0.0))

    def set_state(self, q: ArrayLike, qdot: ArrayLike) -> None:
        """Put the joints at angles ``q`` [rad] moving at ``qdot`` [rad/s], e.g. to replay a transition."""
        q, qdot = np.asarray(q, dtype=np.float64), np.asarray(qdot, dtype=np.float64)
        for joint, angle, rate in zip(JOINT_INDICES, q, qdot):
            pybullet.resetJointState(self._body, joint, float(angle), float(rate), physicsClientId=self._client)

    def step(self, torque: ArrayLike) -> NDArray[np.float64]:
        """Apply ``torque = (hip, knee)`` [N*m], clamped to the limit, for one step; return what was applied."""
        torque = np.asarray(torque, dtype=np.float64)
        if torque.shape != (len(JOINT_INDICES),) or not np.all(np.isfinite(torque)):
            raise ValueError(f"torque={torque!r} must be {len(JOINT_INDICES)} finite numbers (hip, knee) in N*m")
        applied = np.clip(torque, -self.torque_limit_nm, self.torque_limit_nm)
        pybullet.setJointMotorControlArray(
            self._body, JOINT_INDICES, pybullet.TORQUE_CONTROL, forces=applied, physicsClientId=self._client
        )
        pybullet.stepSimulation(physicsClientId=self._client)
        self.steps += 1
        return applied

    def joint_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Joint angles ``q`` [rad] and rates ``qdot`` [rad/s], (hip, knee)."""
        states = pybullet.getJointStates(self._body, JOINT_INDICES, physicsClientId=self._client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def close(self) -> None:
        """Disconnect the PyBullet client (safe to call twice)."""
        if self._client >= 0:
            pybullet.disconnect(physicsClientId=self._client)
            self._client = -1
