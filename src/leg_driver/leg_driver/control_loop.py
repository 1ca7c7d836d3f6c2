"""The ROS-free 500 Hz torque loop: serial I/O on absolute deadlines, safety clamps, watchdogs, homing.

Runs on its own thread. Each cycle: read the MCU's frames, decide the torque, send one TORQUE
(armed) or HEARTBEAT (disarmed) frame, then hand the newest valid state to ``on_state``. The torque
is zero unless all hold: armed (here and on the MCU, which disarms us when it reports
OVER_TEMPERATURE), the link healthy for ``recovery_cycles`` cycles (valid states, a new one within
``state_timeout_cycles``, acknowledgements less than ``max_ack_lag_cycles`` frames behind: see
:mod:`~leg_driver.mcu_loop`), and a command newer than ``command_timeout_s`` that arrived after the
last arming, fault or homing. Then it is clamped to ``max_torque``, and a joint beyond its limits or
faster than ``max_velocity`` gets no torque that pushes it further; a value that is not finite
gets none at all. A successful homing holds its target with the same PID until such a command
arrives (a disarm, a link fault or a failed homing ends the hold), so an episode starts at the
home pose at rest however long the agent takes to send its first command.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .loop_timing import request_realtime
from .mcu_loop import CommandSlot, McuLoop, ResetRequest, values_problem
from .protocol_frames import JOINTS, Enable, Heartbeat, State, Status, Torque
from .serial_link import SerialLink

ZERO = (0.0, 0.0)
HOME_SETTLE_CYCLES = 25
HOME_INTEGRAL_LIMIT = 0.05  # rad*s: bounds the integral torque to home_ki * 0.05


@dataclass(frozen=True)
class SafetyLimits:
    max_torque: float  # N*m, each joint
    max_velocity: float  # rad/s: above it, no torque that accelerates the joint further
    joint_min: tuple[float, float]  # rad: beyond a limit, no torque that pushes further out
    joint_max: tuple[float, float]

    def clamp(self, torque, q, qdot) -> tuple[float, float]:
        """``torque`` within the limits at joint state (``q``, ``qdot``); zero where any of them is not finite."""
        out = []
        for k in range(JOINTS):
            if not all(math.isfinite(x) for x in (torque[k], q[k], qdot[k])):
                out.append(0.0)
                continue
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
    state_wait_us: int = 0  # with no state at a deadline, keep reading this long for it before answering
    max_ack_lag_cycles: int = 4
    recovery_cycles: int = 10
    state_margin_rad: float = 0.5
    state_max_velocity: float = 60.0
    realtime_priority: int = 0
    home_kp: tuple[float, float] = (60.0, 8.0)  # (hip, knee): the light shank needs far smaller gains
    home_kd: tuple[float, float] = (2.0, 0.2)
    home_ki: tuple[float, float] = (200.0, 30.0)
    home_tolerance_rad: float = 0.03
    home_timeout_s: float = 5.0


def command_problem(values) -> str:
    """What is wrong with an effort command ([hip, knee] N*m), or '' if it can be applied."""
    return values_problem(values, JOINTS, "([hip, knee] in N*m)")


def effort_commands() -> CommandSlot:
    """The slot of the effort commands: a malformed one is replaced by zero torque."""
    return CommandSlot(command_problem, ZERO)


@dataclass
class HomeRequest(ResetRequest):
    """A reset by PID homing, with the integral of its position error."""

    integral: np.ndarray = field(default_factory=lambda: np.zeros(JOINTS))


@dataclass(frozen=True)
class StateSample:
    """A state the loop received, the host time it arrived and the torque the loop answered with."""

    state: State
    received_ns: int
    commanded: tuple[float, float]


class ControlLoop(McuLoop):
    """The torque loop over ``link``; ``on_state`` (each new state) and ``on_home_done`` run on the loop thread."""

    STATE = State
    SAMPLE = StateSample
    STOP_FRAMES = (Torque(ZERO), Enable(False))
    THREAD_NAME = "leg_control_loop"

    def __init__(self, link: SerialLink, limits: SafetyLimits, settings: LoopSettings,
                 on_state: Callable[[StateSample], None], on_home_done: Callable[[], None] = lambda: None,
                 record_timing: bool = False, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(link, limits, settings, effort_commands(), on_state, on_home_done, record_timing, clock,
                         sleep)
        self.scheduling = ""
        self._hold: HomeRequest | None = None  # the homing that succeeded last, holding until a fresh command

    def counters(self) -> dict[str, object]:
        """Timing of the cycles since the last call, and every counter since start (for /diagnostics)."""
        return {**self._link_counters(), "write_overruns": self.link.write_overruns, **self._mcu_counters(),
                "fault": self.fault, "scheduling": self.scheduling}

    def start_home(self, target, timeout_s: float) -> HomeRequest:
        """Drive the joints to ``target`` [rad] with PID until settled; ``done`` is set when it ends either way.

        Commands are ignored meanwhile, and afterwards only those sent after it count; until the first of them,
        a successful homing holds ``target``.
        """
        return self._start_reset(HomeRequest((float(target[0]), float(target[1])), self._deadline_after(timeout_s)),
                                 "disarmed: arm the motors first (enable true), homing needs torque")

    def _run(self) -> None:
        self.scheduling = request_realtime(self.settings.realtime_priority)
        super()._run()

    def _check_state(self, state: State) -> None:
        if state.status & Status.OVER_TEMPERATURE and self._armed:
            self.set_armed(False)  # a hot motor must not keep being driven

    def _answer(self, now_ns: int) -> tuple[Torque | Heartbeat, tuple[float, float]]:
        torque = self._torque(now_ns)
        return Torque(torque) if self._armed else Heartbeat(), torque

    def _torque(self, now_ns: int) -> tuple[float, float]:
        state = self.latest_state
        if not (self._armed and self.mcu_armed) or self.fault or state is None:
            self._command_live = False
            self._hold = None
            return self._homing_tick(None, now_ns)
        if self._reset is not None:
            return self._homing_tick(state, now_ns)
        command = self._live_command(now_ns)
        if command is not None:
            self._hold = None
            return self.limits.clamp(command, state.position, state.velocity)
        hold = self._hold
        return ZERO if hold is None else self._pid(hold, state)

    def _homing_tick(self, state: State | None, now_ns: int) -> tuple[float, float]:
        """PID torque towards the home target (zero without a usable state); finishes the request, which then holds."""
        request = self._reset
        if request is None or request.done.is_set():
            return ZERO
        if now_ns > request.deadline_ns:
            joints = np.round(self.latest_state.position, 3).tolist() if self.latest_state else "?"
            self._hold = None
            self._finish_reset(False, f"homing timed out; last fault: {self.last_fault or 'none'}; joints at "
                                      f"{joints} rad")
            return ZERO
        if state is None:  # no usable state: start settling and integrating afresh once there is one
            request.settled = 0
            request.integral = np.zeros(JOINTS)
            return ZERO
        torque = self._pid(request, state)
        tolerance = self.settings.home_tolerance_rad
        error = np.subtract(request.target, state.position)
        if np.abs(error).max() < tolerance and np.abs(state.velocity).max() < 10 * tolerance:
            request.settled += 1
        else:
            request.settled = 0
        if request.settled >= HOME_SETTLE_CYCLES:
            self._hold = request
            self._finish_reset(True, f"joints at {np.round(state.position, 4).tolist()} rad "
                                     f"(target {list(request.target)})")
        return torque

    def _pid(self, request: HomeRequest, state: State) -> tuple[float, float]:
        """The PID torque towards ``request.target`` at ``state``, within the limits; integrates the error."""
        s = self.settings
        error = np.subtract(request.target, state.position)
        request.integral = np.clip(request.integral + error / s.rate_hz, -HOME_INTEGRAL_LIMIT, HOME_INTEGRAL_LIMIT)
        torque = (np.multiply(s.home_kp, error) + np.multiply(s.home_ki, request.integral)
                  - np.multiply(s.home_kd, state.velocity))
        return self.limits.clamp(torque, state.position, state.velocity)
