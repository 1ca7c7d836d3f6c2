"""The ROS-free 500 Hz torque loop: serial I/O on absolute deadlines, safety clamps, watchdogs, homing.

Runs on its own thread. Each cycle: read the MCU's frames, decide the torque, send one TORQUE
(armed) or HEARTBEAT (disarmed) frame, then hand the newest state to ``on_state``. The torque is
zero unless all hold: armed (here and on the MCU), the link healthy (a new state within
``state_timeout_cycles`` and the MCU acknowledging commands at most ``max_ack_lag_cycles`` late),
and a command newer than ``command_timeout_s`` that arrived after the last arming, fault or
homing. Then it is clamped to ``max_torque``, and a joint beyond its limits or faster than
``max_velocity`` gets no torque that pushes it further.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .loop_timing import NS_PER_S, DeadlineClock, PeriodStats, request_realtime
from .protocol_frames import JOINTS, Enable, Error, ErrorCode, Heartbeat, State, Status, Torque
from .serial_link import SerialLink

ZERO = (0.0, 0.0)
ENABLE_RESEND_CYCLES = 10
HOME_SETTLE_CYCLES = 25
HOME_INTEGRAL_LIMIT = 0.05  # rad*s: bounds the integral torque to home_ki * 0.05


@dataclass(frozen=True)
class SafetyLimits:
    max_torque: float  # N*m, each joint
    max_velocity: float  # rad/s: above it, no torque that accelerates the joint further
    joint_min: tuple[float, float]  # rad: beyond a limit, no torque that pushes further out
    joint_max: tuple[float, float]

    def clamp(self, torque, q, qdot) -> tuple[float, float]:
        out = []
        for k in range(JOINTS):
            tau = min(max(torque[k], -self.max_torque), self.max_torque)
            if (q[k] > self.joint_max[k] and tau > 0) or (q[k] < self.joint_min[k] and tau < 0):
                tau = 0.0
            if abs(qdot[k]) > self.max_velocity and tau * qdot[k] > 0:
                tau = 0.0
            out.append(tau)
        return (out[0], out[1])


@dataclass(frozen=True)
class LoopSettings:
    rate_hz: int = 500
    spin_us: int = 200  # busy-wait this long before each deadline (sleep is coarser)
    command_timeout_s: float = 0.02
    state_timeout_cycles: int = 2
    max_ack_lag_cycles: int = 4
    realtime_priority: int = 0
    home_kp: tuple[float, float] = (60.0, 8.0)  # (hip, knee): the light shank needs far smaller gains
    home_kd: tuple[float, float] = (2.0, 0.2)
    home_ki: tuple[float, float] = (200.0, 30.0)
    home_tolerance_rad: float = 0.03
    home_timeout_s: float = 5.0


def command_problem(values) -> str:
    """What is wrong with an effort command ([hip, knee] N*m), or '' if it can be applied."""
    if len(values) != JOINTS:
        return f"has {len(values)} values, expected {JOINTS} ([hip, knee] in N*m)"
    if not all(math.isfinite(v) for v in values):
        return "contains NaN or inf (check the policy output before publishing)"
    return ""


class CommandSlot:
    """Latest effort command and its arrival time, swapped as one tuple (no lock)."""

    def __init__(self) -> None:
        self.latest: tuple[tuple[float, float], int] = (ZERO, 0)
        self.rejected = 0

    def offer(self, values, now_ns: int) -> str:
        """Take ``values`` ([hip, knee] N*m) or, if malformed, zero torque; return the problem ('' if none)."""
        values = list(values)
        problem = command_problem(values)
        if problem:
            self.rejected += 1
            self.latest = (ZERO, now_ns)
        else:
            self.latest = ((float(values[0]), float(values[1])), now_ns)
        return problem


@dataclass
class HomeRequest:
    target: tuple[float, float]
    deadline_ns: int
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""
    settled: int = 0
    integral: np.ndarray = field(default_factory=lambda: np.zeros(JOINTS))


@dataclass(frozen=True)
class StateSample:
    """A state the loop received, the host time it arrived and the torque the loop answered with."""

    state: State
    received_ns: int
    commanded: tuple[float, float]


class ControlLoop:
    """The torque loop over ``link``; ``on_state`` (each new state) and ``on_home_done`` run on the loop thread."""

    def __init__(self, link: SerialLink, limits: SafetyLimits, settings: LoopSettings,
                 on_state: Callable[[StateSample], None], on_home_done: Callable[[], None] = lambda: None,
                 record_timing: bool = False) -> None:
        self.link = link
        self.limits = limits
        self.settings = settings
        self.commands = CommandSlot()
        self.stats = PeriodStats()
        self.scheduling = ""
        self.watchdog_trips = 0
        self.link_faults = 0
        self.mcu_errors: dict[str, int] = {}
        self.fault = "starting"  # why the torque is zero for link reasons ('' when the link is healthy)
        self.mcu_armed = False
        self.latest_state: State | None = None
        self.timing_log: list[tuple[int, int]] | None = [] if record_timing else None  # (deadline ns, lateness ns)
        self._on_state = on_state
        self._on_home_done = on_home_done
        self._period_ns = NS_PER_S // settings.rate_hz
        self._armed = False
        self._fresh_after_ns = 0  # commands older than this are ignored (arming, fault, homing)
        self._command_live = False
        self._state_cycle = -1
        self._ack_lag = 0
        self._enable_cycle = -ENABLE_RESEND_CYCLES
        self._home: HomeRequest | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leg_control_loop", daemon=True)
        self.clock = DeadlineClock(self._period_ns, settings.spin_us * 1000)

    @property
    def armed(self) -> bool:
        return self._armed

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the loop; the MCU gets zero torque and a disarm first if the link is up."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        now = time.monotonic_ns()
        if self.link.connected:
            self.link.send(Torque(ZERO), now)
            self.link.send(Enable(False), now)
        self.link.close()

    def counters(self) -> dict[str, object]:
        """Timing of the cycles since the last call, and every counter since start (for /diagnostics)."""
        link = self.link
        return {**self.stats.take_window(), "missed_cycles": self.clock.missed, "total_cycles": self.clock.cycle,
                "crc_errors": link.crc_errors, "resyncs": link.resyncs, "reconnects": link.reconnects,
                "link_losses": link.link_losses, "link_faults": self.link_faults,
                "watchdog_trips": self.watchdog_trips, "rejected_commands": self.commands.rejected,
                "write_overruns": link.write_overruns, "mcu_errors": dict(self.mcu_errors), "link": link.state.value,
                "mcu_armed": self.mcu_armed, "fault": self.fault, "scheduling": self.scheduling}

    def set_armed(self, armed: bool) -> None:
        """Arm or disarm; either way the next non-zero torque needs a command sent after this call."""
        self._fresh_after_ns = time.monotonic_ns()
        self._armed = armed

    def start_home(self, target, timeout_s: float) -> HomeRequest:
        """Drive the joints to ``target`` [rad] with PID until settled; ``done`` is set when it ends either way.

        Commands are ignored meanwhile, and afterwards only those sent after it count.
        """
        request = HomeRequest((float(target[0]), float(target[1])), time.monotonic_ns() + int(timeout_s * NS_PER_S))
        if not self._armed:
            request.message = "disarmed: arm the motors first (enable true), homing needs torque"
            request.done.set()
        else:
            previous, self._home = self._home, request
            if previous is not None:
                previous.message = "superseded by a newer reset"
                previous.done.set()
        return request

    def _run(self) -> None:
        self.scheduling = request_realtime(self.settings.realtime_priority)
        while not self._stop.is_set():
            lateness = self.clock.wait()
            self.stats.add(lateness)
            if self.timing_log is not None:
                self.timing_log.append((self.clock.deadline_ns, lateness))
            self._cycle(time.monotonic_ns())

    def _cycle(self, now_ns: int) -> None:
        new_state = None
        for frame in self.link.poll(now_ns):
            if isinstance(frame.message, State):
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
        self._check_link(cycle, now_ns)
        torque = self._torque(now_ns)
        if self.link.connected:
            if self._armed != self.mcu_armed and cycle - self._enable_cycle >= ENABLE_RESEND_CYCLES:
                self._enable_cycle = cycle
                self.link.send(Enable(self._armed), now_ns)
            self.link.send(Torque(torque) if self._armed else Heartbeat(), now_ns)
        if new_state is not None:
            self._on_state(StateSample(new_state, now_ns, torque))

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
            self._fresh_after_ns = now_ns  # after a fault, only a command sent since counts
        self.fault = fault

    def _torque(self, now_ns: int) -> tuple[float, float]:
        state = self.latest_state
        if not (self._armed and self.mcu_armed) or self.fault or state is None:
            self._command_live = False
            return self._homing_tick(None, now_ns)
        if self._home is not None:
            return self._homing_tick(state, now_ns)
        command, received_ns = self.commands.latest
        live = received_ns > self._fresh_after_ns and now_ns - received_ns <= self.settings.command_timeout_s * NS_PER_S
        if self._command_live and not live and received_ns > self._fresh_after_ns:
            self.watchdog_trips += 1
        self._command_live = live
        return self.limits.clamp(command, state.position, state.velocity) if live else ZERO

    def _finish_home(self, request: HomeRequest) -> None:
        self._home = None
        self._fresh_after_ns = time.monotonic_ns()
        request.done.set()
        self._on_home_done()

    def _homing_tick(self, state: State | None, now_ns: int) -> tuple[float, float]:
        """PID torque towards the home target (zero without a usable state); finishes the request."""
        request = self._home
        if request is None or request.done.is_set():
            return ZERO
        if now_ns > request.deadline_ns:
            request.message = (f"homing timed out; last fault: {self.fault or 'none'}; joints at "
                               f"{np.round(self.latest_state.position, 3).tolist() if self.latest_state else '?'} rad")
            self._finish_home(request)
            return ZERO
        if state is None:
            request.settled = 0
            return ZERO
        s = self.settings
        error = np.subtract(request.target, state.position)
        request.integral = np.clip(request.integral + error / s.rate_hz, -HOME_INTEGRAL_LIMIT, HOME_INTEGRAL_LIMIT)
        torque = (np.multiply(s.home_kp, error) + np.multiply(s.home_ki, request.integral)
                  - np.multiply(s.home_kd, state.velocity))
        if np.abs(error).max() < s.home_tolerance_rad and np.abs(state.velocity).max() < 10 * s.home_tolerance_rad:
            request.settled += 1
        else:
            request.settled = 0
        if request.settled >= HOME_SETTLE_CYCLES:
            request.ok = True
            request.message = f"joints at {np.round(state.position, 4).tolist()} rad (target {list(request.target)})"
            self._finish_home(request)
            return ZERO
        return self.limits.clamp(torque, state.position, state.velocity)
