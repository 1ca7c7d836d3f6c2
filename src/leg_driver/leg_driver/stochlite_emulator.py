"""StochLite's microcontroller, emulated on a pseudo-terminal with the robot simulated in PyBullet in real time.

Firmware as in ``docs/serial_protocol.md`` (StochLite profile): a free-running 100 Hz tick applies the
latest POSITION targets (clamped to the URDF limits) with the servos' torque on while armed, holds
the measured positions when the host has been silent longer than the watchdog, lets the servos go
limp when disarmed, steps the simulation 10 ms and sends one STOCHLITE_STATE frame (servos + IMU).
The robot starts disarmed, lying limp on its belly; a reset stands it up. Like the real robot, it
falls over under random gaits; the driver's reset then refuses (the IMU shows it tilted). With
``operator_s > 0`` an emulated operator sets a robot that lay tilted for that long back upright
(joints as they are), so unattended training can go on; ``rightings`` counts it.

Physics: :class:`StochliteSimulation`'s explicit servo law needs 10 kHz steps, too slow for real
time on a loaded machine (7 ms per 10 ms step when quiet, 30-40 ms under load), so the emulator runs :class:`RealtimeStochliteSimulation` instead: the same
robot and ground at 1 kHz, with the servo as PyBullet's implicit position motor (stable at 1 kHz,
torque capped at the same 7 N*m): about 2 ms per 10 ms step here. It stands (0.265 m) and trots
upright (0.27 m/s on flat ground at the 0.1 m step, against 0.30 m/s at 10 kHz, measured over 2 s):
test_stochlite_driver.py.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from stochlite_bringup.tasks.quiet_pybullet import pybullet
from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_simulation import (CONTROL_PERIOD_S, JOINT_LOWER_RAD, JOINT_NAMES,
                                                          JOINT_UPPER_RAD, TORQUE_LIMIT_NM, StochliteSimulation)

from .emulated_mcu import EmulatedMcu, FaultPlan, McuSession
from .protocol_frames import SERVOS, Heartbeat, Position, Robot, ServoFlags, StochliteState

REALTIME_PHYSICS_STEP_S = 0.001
REALTIME_STEPS_PER_CONTROL = round(CONTROL_PERIOD_S / REALTIME_PHYSICS_STEP_S)
SERVO_POSITION_GAIN = 0.05  # PyBullet position motor gains (dimensionless); 0.1 and up flip the robot in a trot
SERVO_VELOCITY_GAIN = 1.0
SETTLE_STEPS = 200  # 2 s limp before the port opens
FALLEN_TILT_RAD = 0.6  # the emulated operator's notion of fallen (stochlite_env.is_fallen's tilt)


class RealtimeStochliteSimulation(StochliteSimulation):
    """StochLite at 1 kHz with implicit position servos: ``step(targets)`` or ``step(None)`` (limp)."""

    def __init__(self, slope_roll_deg: float = 0.0, slope_pitch_deg: float = 0.0) -> None:
        super().__init__(slope_roll_deg, slope_pitch_deg)
        pybullet.setTimeStep(REALTIME_PHYSICS_STEP_S, physicsClientId=self._client)

    def step(self, joint_targets) -> object:
        self._previous_velocity = self._base_velocity()[0]
        torque_sum, power_sum = np.zeros(SERVOS), 0.0
        if joint_targets is None:
            pybullet.setJointMotorControlArray(self._body, self.joint_indices, pybullet.VELOCITY_CONTROL,
                                               forces=[0.0] * SERVOS, physicsClientId=self._client)
        else:
            pybullet.setJointMotorControlArray(
                self._body, self.joint_indices, pybullet.POSITION_CONTROL, targetPositions=list(joint_targets),
                forces=[TORQUE_LIMIT_NM] * SERVOS, positionGains=[SERVO_POSITION_GAIN] * SERVOS,
                velocityGains=[SERVO_VELOCITY_GAIN] * SERVOS, physicsClientId=self._client)
        for _ in range(REALTIME_STEPS_PER_CONTROL):
            pybullet.stepSimulation(physicsClientId=self._client)
            states = pybullet.getJointStates(self._body, self.joint_indices, physicsClientId=self._client)
            torque = np.array([s[3] for s in states])
            torque_sum += torque
            power_sum += float(np.sum(np.abs(torque * np.array([s[1] for s in states]))))
        self.time_s += CONTROL_PERIOD_S
        self._last_torque = torque_sum / REALTIME_STEPS_PER_CONTROL
        self._last_power_w = power_sum / REALTIME_STEPS_PER_CONTROL
        return self.state()


class EmulatedStochliteMcu(EmulatedMcu):
    """StochLite's firmware loop; :meth:`run` until ``should_stop()`` is true."""

    ROBOT = Robot.STOCHLITE
    JOINTS = SERVOS
    COMMAND = Position

    def __init__(self, link, plan: FaultPlan, rate_hz: int = 100, watchdog_ms: float = 50.0, seed: int = 0,
                 record=None, operator_s: float = 1.0) -> None:
        self.sim = RealtimeStochliteSimulation()
        self._state = self.sim.reset(standing_joint_targets())
        for _ in range(SETTLE_STEPS):  # disarmed: the robot starts lying limp on its belly, at rest
            self._state = self.sim.step(None)
        self._targets: np.ndarray | None = None
        self._hold: np.ndarray | None = None
        self._operator_ticks = round(operator_s * rate_hz)
        self._fallen_ticks = 0
        self.rightings = 0
        super().__init__(link, plan, rate_hz, watchdog_ms, seed, record, ",".join(JOINT_NAMES))

    def _renewed_session(self, now_ns: int, open: bool = False, ack_seq: int = 0) -> McuSession:
        """Armed servos keep holding through a new pty or HELLO: the commands are forgotten, the watchdog elapsed."""
        return McuSession(open=open, armed=self._session.armed, last_command_ns=now_ns - self.watchdog_ns - 1,
                          ack_seq=ack_seq)

    def _take_command(self, message: Position | Heartbeat) -> tuple[float, ...] | None:
        if isinstance(message, Heartbeat):
            return None
        self._targets, self._hold = np.asarray(message.target, dtype=np.float64), None
        return message.target

    def _forget_commands(self) -> None:
        self._targets, self._hold = None, None

    def _step(self, now_ns: int) -> np.ndarray | None:
        applied = self._applied_targets(now_ns)
        self._state = self.sim.step(applied)
        self._emulated_operator()
        return applied

    def _emulated_operator(self) -> None:
        """Set the robot back upright (joints as they are) once it lay tilted for ``operator_s``."""
        x, y = self._state.quaternion[:2]
        fallen = 1.0 - 2.0 * (x * x + y * y) < np.cos(FALLEN_TILT_RAD)
        self._fallen_ticks = self._fallen_ticks + 1 if fallen else 0
        if self._operator_ticks and self._fallen_ticks >= self._operator_ticks:
            self._state = self.sim.reset(np.clip(self._state.q, JOINT_LOWER_RAD, JOINT_UPPER_RAD))
            self._fallen_ticks = 0
            self.rightings += 1

    def _applied_targets(self, now_ns: int) -> np.ndarray | None:
        """The servos' targets this tick: None limp (disarmed), the measured pose held on watchdog or no target."""
        if not self._session.armed:
            return None
        if self._host_silent(now_ns) or self._targets is None:
            if self._hold is None:
                self._hold = self._state.q.copy()
            return np.clip(self._hold, JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        return np.clip(self._targets, JOINT_LOWER_RAD, JOINT_UPPER_RAD)

    def _state_message(self, now_ns: int, applied: np.ndarray | None) -> StochliteState:
        s, st = self._session, self._state
        flags = [0] * SERVOS
        if applied is not None:
            limited = np.zeros(SERVOS, bool) if self._targets is None else applied != self._targets
            flags = [int(ServoFlags.TORQUE_ON) | (int(ServoFlags.POSITION_LIMITED) if x else 0) for x in limited]
        return StochliteState((now_ns // 1000) % (1 << 32), s.ack_seq, self._status(now_ns), tuple(st.q),
                              tuple(st.qdot), tuple(st.torque), tuple(flags), tuple(st.quaternion),
                              tuple(st.angular_velocity), tuple(st.linear_acceleration))

    def _overheated(self, state: StochliteState) -> StochliteState:
        flags = (state.servo_flags[0] | ServoFlags.OVER_TEMPERATURE, *state.servo_flags[1:])
        return dataclasses.replace(state, servo_flags=flags)
