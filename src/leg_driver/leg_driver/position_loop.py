"""StochLite's ROS-free 100 Hz position loop: 12 servo targets over the serial link, with the leg's safety rules.

Each cycle: read the MCU's frames, decide the 12 targets, send one POSITION (armed) or HEARTBEAT
(disarmed) frame, then hand the newest state to ``on_state``. Safe states (docs/serial_protocol.md):

* **disarmed** (at start, on ``set_armed(False)``, on a servo over-temperature): the MCU switches the
  servos' torque off (limp). A standing robot sinks, so disarm only when it is supported or lying.
* **hold** (armed, but no command newer than ``command_timeout_s`` that arrived after the last
  arming, link fault or reset): the targets stop at the joints' measured positions at that moment,
  so the robot keeps its posture instead of falling. The MCU does the same when the host is silent
  (lost port, stalled host), and keeps holding through a reconnect.
* every target is clamped to the URDF limits and moves at most ``max_step_rad`` per cycle from the
  previous one, so a jump in the commands (or in hold/reset targets) cannot slam a servo.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .loop_timing import NS_PER_S, DeadlineClock, PeriodStats
from .protocol_frames import SERVOS, Enable, Error, ErrorCode, Heartbeat, Position, ServoFlags, Status, StochliteState
from .serial_link import SerialLink

ENABLE_RESEND_CYCLES = 10
RESET_SETTLE_CYCLES = 10


@dataclass(frozen=True)
class PositionLimits:
    joint_min: tuple[float, ...]  # rad, 12 servos
    joint_max: tuple[float, ...]
    max_step_rad: float  # largest change of a target per cycle

    def limit(self, target: np.ndarray, previous: np.ndarray, max_step_rad: float | None = None) -> np.ndarray:
        """``target`` clamped to the joint limits, then moved at most ``max_step_rad`` (default: the limits') from
        ``previous``."""
        step = self.max_step_rad if max_step_rad is None else min(max_step_rad, self.max_step_rad)
        target = np.clip(target, self.joint_min, self.joint_max)
        return previous + np.clip(target - previous, -step, step)


@dataclass(frozen=True)
class PositionSettings:
    rate_hz: int = 100
    spin_us: int = 200
    command_timeout_s: float = 0.05
    state_timeout_cycles: int = 3
    max_ack_lag_cycles: int = 4
    reset_tolerance_rad: float = 0.05
    reset_timeout_s: float = 5.0
    reset_max_step_rad: float = 0.01  # a reset stands the robot up from lying: slowly, or it flips
    reset_max_tilt_rad: float = 0.6  # a reset fails if the IMU says the base is tilted more (stochlite_env.is_fallen)


def base_tilt_rad(quaternion) -> float:
    """Angle [rad] between the base's z axis and the world's vertical, from the IMU quaternion (x, y, z, w)."""
    x, y = quaternion[0], quaternion[1]
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y))))


def position_command_problem(values) -> str:
    """What is wrong with a position command (12 targets [rad]), or '' if it can be applied."""
    if len(values) != SERVOS:
        return f"has {len(values)} values, expected {SERVOS} servo targets [rad] in JOINT_NAMES order"
    if not all(math.isfinite(v) for v in values):
        return "contains NaN or inf (check the policy output before publishing)"
    return ""


@dataclass
class ResetRequest:
    target: np.ndarray
    deadline_ns: int
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""
    settled: int = 0


@dataclass(frozen=True)
class PositionSample:
    """A state the loop received, the host time it arrived and the targets it answered with (None: limp)."""

    state: StochliteState
    received_ns: int
    targets: tuple[float, ...] | None


class PositionLoop:
    """The position loop over ``link`` on its own thread; ``on_state`` runs on that thread."""

    def __init__(self, link: SerialLink, limits: PositionLimits, settings: PositionSettings,
                 on_state: Callable[[PositionSample], None]) -> None:
        self.link = link
        self.limits = limits
        self.settings = settings
        self.stats = PeriodStats()
        self.rejected = 0
        self.watchdog_trips = 0
        self.link_faults = 0
        self.servo_faults = 0
        self.mcu_errors: dict[str, int] = {}
        self.fault = "starting"
        self.mcu_armed = False
        self.latest_state: StochliteState | None = None
        self.holding = False
        self._command: tuple[tuple[float, ...] | None, int] = (None, 0)
        self._on_state = on_state
        self._armed = False
        self._fresh_after_ns = 0
        self._command_live = False
        self._target: np.ndarray | None = None  # last target sent (None: not sending targets)
        self._hold: np.ndarray | None = None
        self._state_cycle = -1
        self._ack_lag = 0
        self._enable_cycle = -ENABLE_RESEND_CYCLES
        self._reset: ResetRequest | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stochlite_position_loop", daemon=True)
        self.clock = DeadlineClock(NS_PER_S // settings.rate_hz, settings.spin_us * 1000)

    @property
    def armed(self) -> bool:
        return self._armed

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the loop; the MCU gets a disarm (torque off) first if the link is up."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.link.connected:
            self.link.send(Enable(False), time.monotonic_ns())
        self.link.close()

    def offer(self, values, now_ns: int) -> str:
        """Take a command (12 targets [rad]); a malformed one is rejected, counted and ignored."""
        values = list(values)
        problem = position_command_problem(values)
        if problem:
            self.rejected += 1
        else:
            self._command = (tuple(float(v) for v in values), now_ns)
        return problem

    def set_armed(self, armed: bool) -> None:
        """Arm (servos hold their measured positions until a fresh command) or disarm (torque off)."""
        self._fresh_after_ns = time.monotonic_ns()
        self._hold = None
        self._armed = armed

    def start_reset(self, target, timeout_s: float) -> ResetRequest:
        """Move the servos (rate-limited) to ``target`` [rad]; ``done`` is set once settled or failed."""
        request = ResetRequest(np.asarray(target, dtype=np.float64),
                               time.monotonic_ns() + int(timeout_s * NS_PER_S))
        if not self._armed:
            request.message = "disarmed: arm the servos first (enable true), a reset moves them"
            request.done.set()
        else:
            previous, self._reset = self._reset, request
            if previous is not None:
                previous.message = "superseded by a newer reset"
                previous.done.set()
        return request

    def counters(self) -> dict[str, object]:
        link = self.link
        return {**self.stats.take_window(), "missed_cycles": self.clock.missed, "total_cycles": self.clock.cycle,
                "crc_errors": link.crc_errors, "resyncs": link.resyncs, "reconnects": link.reconnects,
                "link_losses": link.link_losses, "link_faults": self.link_faults,
                "watchdog_trips": self.watchdog_trips, "rejected_commands": self.rejected,
                "servo_faults": self.servo_faults, "holding": self.holding,
                "mcu_errors": dict(self.mcu_errors), "link": link.state.value, "mcu_armed": self.mcu_armed,
                "fault": self.fault or (link.last_error if not link.connected else "")}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.stats.add(self.clock.wait())
            self.cycle(time.monotonic_ns())

    def cycle(self, now_ns: int) -> None:
        new_state = None
        for frame in self.link.poll(now_ns):
            if isinstance(frame.message, StochliteState):
                new_state = frame.message
            elif isinstance(frame.message, Error):
                code = frame.message.code
                name = code.name if isinstance(code, ErrorCode) else str(code)
                self.mcu_errors[name] = self.mcu_errors.get(name, 0) + 1
        cycle = self.clock.cycle
        if new_state is not None:
            self.latest_state = new_state
            self.mcu_armed = bool(new_state.status & Status.ARMED)
            self._state_cycle = cycle
            self._ack_lag = (self.link.sent_seq - new_state.ack_seq) % 65536
            if any(f & ServoFlags.OVER_TEMPERATURE for f in new_state.servo_flags) and self._armed:
                self.servo_faults += 1
                self.set_armed(False)  # a hot servo must not keep holding: torque off
        self._check_link(cycle, now_ns)
        targets = self._targets(now_ns)
        if self.link.connected:
            if self._armed != self.mcu_armed and cycle - self._enable_cycle >= ENABLE_RESEND_CYCLES:
                self._enable_cycle = cycle
                self.link.send(Enable(self._armed), now_ns)
            self.link.send(Heartbeat() if targets is None else Position(tuple(targets)), now_ns)
        if new_state is not None:
            self._on_state(PositionSample(new_state, now_ns, None if targets is None else tuple(targets)))

    def _check_link(self, cycle: int, now_ns: int) -> None:
        if not self.link.connected:
            fault = f"link {self.link.state.value}" + (f": {self.link.last_error}" if self.link.last_error else "")
        elif self._state_cycle < 0 or cycle - self._state_cycle > self.settings.state_timeout_cycles:
            fault = f"no state from the MCU for more than {self.settings.state_timeout_cycles} cycles"
        elif self._ack_lag > self.settings.max_ack_lag_cycles:
            fault = f"the MCU acknowledges commands {self._ack_lag} frames late"
        else:
            fault = ""
        if fault and not self.fault:
            self.link_faults += 1
        if self.fault and not fault:
            self._fresh_after_ns = now_ns  # after a fault, hold until a command sent since
            self._hold = None
        self.fault = fault

    def _targets(self, now_ns: int) -> np.ndarray | None:
        """The 12 targets to send, or None (limp: disarmed, or no usable state)."""
        state = self.latest_state
        if not (self._armed and self.mcu_armed) or self.fault or state is None:
            self._target = self._hold = None
            self._command_live = False
            self.holding = False
            if self._reset is not None and now_ns > self._reset.deadline_ns:
                self._finish_reset(False, f"timed out; last fault: {self.fault or 'disarmed on the MCU'}")
            return None
        measured = np.asarray(state.position, dtype=np.float64)
        if self._target is None:
            self._target = np.clip(measured, self.limits.joint_min, self.limits.joint_max)
        if self._reset is not None:
            self._target = self.limits.limit(self._reset.target, self._target, self.settings.reset_max_step_rad)
            self._reset_tick(measured, base_tilt_rad(state.quaternion), now_ns)
            return self._target
        command, received_ns = self._command
        live = (command is not None and received_ns > self._fresh_after_ns
                and now_ns - received_ns <= self.settings.command_timeout_s * NS_PER_S)
        if self._command_live and not live and received_ns > self._fresh_after_ns:
            self.watchdog_trips += 1
        self._command_live = live
        if live:
            self._hold = None
            goal = np.asarray(command)
        else:
            if self._hold is None:
                self._hold = measured.copy()
            goal = self._hold
        self.holding = not live
        self._target = self.limits.limit(goal, self._target)
        return self._target

    def _reset_tick(self, measured: np.ndarray, tilt_rad: float, now_ns: int) -> None:
        """Settled = every servo within tolerance for 10 cycles and the base upright; a tilted base waits for the
        operator until the timeout."""
        request = self._reset
        upright = tilt_rad <= self.settings.reset_max_tilt_rad
        if now_ns > request.deadline_ns:
            self._finish_reset(False, f"timed out with servos at {np.round(measured, 3).tolist()} rad" + (
                "" if upright else f" and the base tilted {math.degrees(tilt_rad):.0f} deg from upright (IMU): the "
                                   f"robot fell or lies on its side or back; set it on its feet and reset again"))
        elif np.abs(measured - request.target).max() < self.settings.reset_tolerance_rad and upright:
            request.settled += 1
            if request.settled >= RESET_SETTLE_CYCLES:
                self._finish_reset(True, f"servos at {np.round(measured, 3).tolist()} rad, base tilted "
                                         f"{math.degrees(tilt_rad):.1f} deg")
        else:
            request.settled = 0

    def _finish_reset(self, ok: bool, message: str) -> None:
        request, self._reset = self._reset, None
        self._fresh_after_ns = time.monotonic_ns()  # no motion after a reset until a fresh command
        self._hold = None
        request.ok, request.message = ok, message
        request.done.set()
