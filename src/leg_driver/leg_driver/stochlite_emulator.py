"""StochLite's microcontroller, emulated on a pseudo-terminal with the robot simulated in PyBullet in real time.

Firmware as in ``docs/serial_protocol.md`` (StochLite profile): a free-running 100 Hz tick applies the
latest POSITION targets (clamped to the URDF limits) with the servos' torque on while armed, holds
the measured positions when the host has been silent longer than the watchdog, lets the servos go
limp when disarmed, steps the simulation 10 ms and sends one STOCHLITE_STATE frame (servos + IMU).
The robot starts disarmed, lying limp on its belly; a reset stands it up. Like the real robot, it
falls over under random gaits; the driver's reset then refuses (the IMU shows it tilted). With
``operator_s > 0`` an emulated operator sets a robot that lay tilted for that long back upright
(joints as they are), so unattended training can go on; ``rightings`` counts it.

Physics: :class:`StochliteSimulation`'s explicit servo law needs 10 kHz steps, 3-4x slower than real
time on this machine, so the emulator runs :class:`RealtimeStochliteSimulation` instead: the same
robot and ground at 1 kHz, with the servo as PyBullet's implicit position motor (stable at 1 kHz,
torque capped at the same 7 N*m): about 2 ms per 10 ms step here. It stands (0.265 m) and trots
upright (0.29 m/s at the 0.1 m step, against 0.37 m/s at 10 kHz): test_stochlite_driver.py.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pybullet

from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_simulation import (CONTROL_PERIOD_S, JOINT_LOWER_RAD, JOINT_NAMES,
                                                          JOINT_UPPER_RAD, TORQUE_LIMIT_NM, StochliteSimulation)

from .emulator import FaultPlan, McuSession, PtyPort, Recorder
from .loop_timing import NS_PER_S, DeadlineClock, request_realtime
from .protocol_frames import (PROTOCOL_VERSION, SERVOS, Enable, Error, ErrorCode, FrameDecoder, Heartbeat, Hello,
                              HelloAck, Position, Robot, ServoFlags, Status, StochliteState, encode)

REALTIME_PHYSICS_STEP_S = 0.001
REALTIME_STEPS_PER_CONTROL = round(CONTROL_PERIOD_S / REALTIME_PHYSICS_STEP_S)
SERVO_POSITION_GAIN = 0.05  # PyBullet position motor gains (dimensionless); 0.1 and up flip the robot in a trot
SERVO_VELOCITY_GAIN = 1.0
SPIN_NS = 200_000
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


class EmulatedStochliteMcu:
    """The firmware loop; :meth:`run` until ``should_stop()`` is true."""

    def __init__(self, link, plan: FaultPlan, rate_hz: int = 100, watchdog_ms: float = 50.0, seed: int = 0,
                 record=None, operator_s: float = 1.0) -> None:
        self.plan = plan
        self.rate_hz = rate_hz
        self.watchdog_ns = int(watchdog_ms * 1e6)
        self.port = PtyPort(link)
        self.recorder = Recorder(record, ",".join(JOINT_NAMES))
        self._rng = random.Random(seed)
        self.sim = RealtimeStochliteSimulation()
        self._state = self.sim.reset(standing_joint_targets())
        for _ in range(SETTLE_STEPS):  # disarmed: the robot starts lying limp on its belly, at rest
            self._state = self.sim.step(None)
        self._decoder = FrameDecoder()
        self._session = McuSession()
        self._targets: np.ndarray | None = None
        self._hold: np.ndarray | None = None
        self._seq = 0
        self._operator_ticks = round(operator_s * rate_hz)
        self._fallen_ticks = 0
        self.rightings = 0
        self._burst = None
        self._t0_ns = 0
        self.ticks = 0
        self.overruns = 0
        self.port.open()

    def close(self) -> None:
        self.port.close()
        self.port.link.unlink(missing_ok=True)
        self.sim.close()
        self.recorder.save()

    def run(self, should_stop, realtime_priority: int = 0) -> str:
        scheduling = request_realtime(realtime_priority)
        clock = DeadlineClock(NS_PER_S // self.rate_hz, SPIN_NS)
        self._t0_ns = time.monotonic_ns()
        while not should_stop():
            clock.wait()
            self.tick(time.monotonic_ns())
        self.overruns = clock.missed
        return scheduling

    def tick(self, now_ns: int) -> None:
        burst = self.plan.active((now_ns - self._t0_ns) / NS_PER_S)
        self._switch_burst(burst, now_ns)
        kind = burst[1] if burst else None
        if kind not in ("stall", "disconnect"):
            self._receive(self.port.read(), now_ns)
        applied = self._applied_targets(now_ns)
        self._state = self.sim.step(applied)
        self._emulated_operator()
        self.ticks += 1
        if kind in ("stall", "disconnect") or not self._session.open:
            return
        self._send_state(self._state_frame(now_ns, applied), kind)

    def _emulated_operator(self) -> None:
        """Set the robot back upright (joints as they are) once it lay tilted for ``operator_s``."""
        x, y = self._state.quaternion[:2]
        fallen = 1.0 - 2.0 * (x * x + y * y) < np.cos(FALLEN_TILT_RAD)
        self._fallen_ticks = self._fallen_ticks + 1 if fallen else 0
        if self._operator_ticks and self._fallen_ticks >= self._operator_ticks:
            self._state = self.sim.reset(np.clip(self._state.q, JOINT_LOWER_RAD, JOINT_UPPER_RAD))
            self._fallen_ticks = 0
            self.rightings += 1

    def _switch_burst(self, burst, now_ns: int) -> None:
        if burst == self._burst:
            return
        if self._burst is not None:
            self.recorder.add(now_ns, "fault_end", self._session.ack_seq, detail=self._burst[1])
            if self._burst[1] == "disconnect":
                self.port.open()
        if burst is not None:
            self.recorder.add(now_ns, "fault_start", self._session.ack_seq, detail=burst[1])
            if burst[1] == "disconnect":
                self.port.close()
                self._decoder = FrameDecoder()
                armed = self._session.armed  # the servos keep holding through a lost link
                self._session = McuSession(armed=armed)
        self._burst = burst

    def _receive(self, data: bytes, now_ns: int) -> None:
        crc_errors = self._decoder.crc_errors
        for frame in self._decoder.feed(data):
            message, s = frame.message, self._session
            if isinstance(message, Hello):
                if message.version != PROTOCOL_VERSION:
                    self._send(Error(ErrorCode.VERSION_MISMATCH, PROTOCOL_VERSION))
                elif message.robot != Robot.STOCHLITE:
                    self._send(Error(ErrorCode.ROBOT_MISMATCH, Robot.STOCHLITE))
                else:  # a new session forgets the commands; armed servos keep holding
                    self._session = McuSession(open=True, armed=s.armed, last_command_ns=now_ns - self.watchdog_ns - 1,
                                               ack_seq=frame.seq)
                    self._send(HelloAck(PROTOCOL_VERSION, SERVOS, self.rate_hz, Robot.STOCHLITE))
                    self.recorder.add(now_ns, "HELLO", frame.seq)
            elif not s.open:
                self._send(Error(ErrorCode.NO_SESSION, 0))
            elif isinstance(message, (Position, Heartbeat)):
                s.last_command_ns, s.ack_seq, s.watchdog_reported = now_ns, frame.seq, False
                if isinstance(message, Position):
                    self._targets, self._hold = np.asarray(message.target, dtype=np.float64), None
                    self.recorder.add(now_ns, "POSITION", frame.seq, message.target)
                else:
                    self.recorder.add(now_ns, "HEARTBEAT", frame.seq)
            elif isinstance(message, Enable):
                s.armed, self._targets, self._hold = message.armed, None, None
                self.recorder.add(now_ns, "ENABLE", frame.seq, detail=str(int(message.armed)))
        if self._decoder.crc_errors > crc_errors and self._session.open:
            self._send(Error(ErrorCode.BAD_CRC, self._decoder.crc_errors % 65536))

    def _applied_targets(self, now_ns: int) -> np.ndarray | None:
        """The servos' targets this tick: None limp (disarmed), the measured pose held on watchdog or no target."""
        s = self._session
        if not s.armed:
            return None
        silent_ns = now_ns - s.last_command_ns
        if s.open and silent_ns > self.watchdog_ns and not s.watchdog_reported:
            s.watchdog_reported = True
            self._send(Error(ErrorCode.WATCHDOG, min(silent_ns // 1_000_000, 65535)))
        if silent_ns > self.watchdog_ns or self._targets is None:
            if self._hold is None:
                self._hold = self._state.q.copy()
            return np.clip(self._hold, JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        return np.clip(self._targets, JOINT_LOWER_RAD, JOINT_UPPER_RAD)

    def _state_frame(self, now_ns: int, applied: np.ndarray | None) -> bytes:
        s, st = self._session, self._state
        status = Status(0)
        if s.armed:
            status |= Status.ARMED
        if s.armed and now_ns - s.last_command_ns > self.watchdog_ns:
            status |= Status.WATCHDOG
        flags = [0] * SERVOS
        if applied is not None:
            limited = np.zeros(SERVOS, bool) if self._targets is None else applied != self._targets
            flags = [int(ServoFlags.TORQUE_ON) | (int(ServoFlags.POSITION_LIMITED) if x else 0) for x in limited]
        state = StochliteState((now_ns // 1000) % (1 << 32), s.ack_seq, status, tuple(st.q), tuple(st.qdot),
                               tuple(st.torque), tuple(flags), tuple(st.quaternion),
                               tuple(st.angular_velocity), tuple(st.linear_acceleration))
        self._seq += 1
        return encode(state, self._seq)

    def _send(self, message) -> None:
        if self.port.master >= 0:
            self._seq += 1
            self.port.write(encode(message, self._seq))

    def _send_state(self, frame: bytes, kind: str | None) -> None:
        if kind is None and self.plan.noise and self._rng.random() < self.plan.noise:
            kind = self._rng.choice(("garbage_between", "bad_crc", "drop"))
        if kind == "garbage":
            frame = self._rng.randbytes(len(frame))
        elif kind == "garbage_between":
            frame = self._rng.randbytes(self._rng.randrange(1, 16)) + frame
        elif kind == "bad_crc":
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        elif kind == "drop":
            return
        self.port.write(frame)

