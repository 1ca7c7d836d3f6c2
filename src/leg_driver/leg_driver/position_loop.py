"""StochLite's ROS-free 100 Hz position loop: 12 servo targets over the serial link, with the leg's safety rules.

Each cycle: read the MCU's frames, decide the 12 targets, send one POSITION (armed) or HEARTBEAT
(disarmed) frame, then hand the newest valid state to ``on_state``. Safe states (docs/serial_protocol.md):

* **disarmed** (at start, on ``set_armed(False)``, on a servo over-temperature): the MCU switches the
  servos' torque off (limp). A standing robot sinks, so disarm only when it is supported or lying.
* **hold** (armed, but no command newer than ``command_timeout_s`` that arrived after the last
  arming, link fault or reset): the targets stop at the joints' measured positions at that moment,
  so the robot keeps its posture instead of falling. The MCU does the same when the host is silent
  (lost port, stalled host), and keeps holding through a reconnect.
* **link fault** (lost port, late or invalid states: :mod:`~leg_driver.mcu_loop`; an invalid IMU reading
  counts too): HEARTBEAT only, so the MCU keeps its last target; the hold after it starts from a
  valid measurement, never from a NaN.
* every target is clamped to the URDF limits and moves at most ``max_step_rad`` per cycle from the
  previous one, so a jump in the commands (or in hold/reset targets) cannot slam a servo.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .mcu_loop import CommandSlot, McuLoop, ResetRequest, values_problem
from .protocol_frames import SERVOS, Enable, Heartbeat, Position, ServoFlags, StochliteState
from .serial_link import SerialLink

RESET_SETTLE_CYCLES = 10
IMU_MAX_RATE_RAD_S = 35.0  # a gyro's usual full scale, 2000 deg/s: faster is not a measurement
IMU_QUATERNION_NORM_TOLERANCE = 0.1


@dataclass(frozen=True)
class PositionLimits:
    joint_min: tuple[float, ...]  # rad, 12 servos
    joint_max: tuple[float, ...]
    max_step_rad: float  # largest change of a target per cycle

    def limit(self, target: np.ndarray, previous: np.ndarray, max_step_rad: float | None = None) -> np.ndarray:
        """``target`` clamped to the joint limits, then moved at most ``max_step_rad`` (default: the limits') from
        ``previous``; where ``target`` is not finite, ``previous`` stays."""
        step = self.max_step_rad if max_step_rad is None else min(max_step_rad, self.max_step_rad)
        target = np.clip(np.where(np.isfinite(target), target, previous), self.joint_min, self.joint_max)
        return previous + np.clip(target - previous, -step, step)


@dataclass(frozen=True)
class PositionSettings:
    rate_hz: int = 100
    spin_us: int = 200
    command_timeout_s: float = 0.05
    state_timeout_cycles: int = 3
    state_wait_us: int = 0  # with no state at a deadline, keep reading this long for it before answering
    max_ack_lag_cycles: int = 4
    recovery_cycles: int = 5
    state_margin_rad: float = 0.5
    state_max_velocity: float = 50.0
    reset_tolerance_rad: float = 0.05
    reset_timeout_s: float = 5.0
    reset_max_step_rad: float = 0.01  # a reset stands the robot up from lying: slowly, or it flips
    reset_max_tilt_rad: float = 0.6  # a reset fails if the IMU says the base is tilted more (stochlite_env.is_fallen)


def base_tilt_rad(quaternion) -> float:
    """Angle [rad] between the base's z axis and the world's vertical, from the IMU quaternion (x, y, z, w)."""
    x, y = quaternion[0], quaternion[1]
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y))))


def imu_problem(state: StochliteState) -> str:
    """What makes the IMU part of a state impossible ('' if nothing): values that are not finite, an orientation
    quaternion far from unit length, or a body rate beyond the gyro's full scale."""
    for name in ("quaternion", "gyro", "accel"):
        values = getattr(state, name)
        if not all(math.isfinite(v) for v in values):
            return f"IMU {name} {list(values)} is not finite"
    norm = math.sqrt(sum(v * v for v in state.quaternion))
    if abs(norm - 1.0) > IMU_QUATERNION_NORM_TOLERANCE:
        return f"IMU quaternion has norm {norm:.3g}, not 1"
    if max(abs(v) for v in state.gyro) > IMU_MAX_RATE_RAD_S:
        return f"IMU gyro {list(state.gyro)} rad/s beyond its full scale ({IMU_MAX_RATE_RAD_S} rad/s)"
    return ""


def position_command_problem(values) -> str:
    """What is wrong with a position command (12 targets [rad]), or '' if it can be applied."""
    return values_problem(values, SERVOS, "servo targets [rad] in JOINT_NAMES order")


@dataclass(frozen=True)
class PositionSample:
    """A state the loop received, the host time it arrived and the targets it answered with (None: limp)."""

    state: StochliteState
    received_ns: int
    targets: tuple[float, ...] | None


class PositionLoop(McuLoop):
    """The position loop over ``link`` on its own thread; ``on_state`` runs on that thread."""

    STATE = StochliteState
    SAMPLE = PositionSample
    STOP_FRAMES = (Enable(False),)  # torque off
    THREAD_NAME = "stochlite_position_loop"

    def __init__(self, link: SerialLink, limits: PositionLimits, settings: PositionSettings,
                 on_state: Callable[[PositionSample], None], clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        # a malformed command is ignored: the last safe target holds
        super().__init__(link, limits, settings, CommandSlot(position_command_problem, None), on_state,
                         clock=clock, sleep=sleep)
        self.servo_faults = 0
        self.holding = False
        self._target: np.ndarray | None = None  # last target sent (None: not sending targets)
        self._hold: np.ndarray | None = None

    def start_reset(self, target, timeout_s: float) -> ResetRequest:
        """Move the servos (rate-limited) to ``target`` [rad]; ``done`` is set once settled or failed."""
        return self._start_reset(ResetRequest(np.asarray(target, dtype=np.float64), self._deadline_after(timeout_s)),
                                 "disarmed: arm the servos first (enable true), a reset moves them")

    def counters(self) -> dict[str, object]:
        link = self.link
        return {**self._link_counters(), "servo_faults": self.servo_faults, "holding": self.holding,
                **self._mcu_counters(), "fault": self.fault or (link.last_error if not link.connected else "")}

    def _state_problem(self, state: StochliteState) -> str:
        return super()._state_problem(state) or imu_problem(state)

    def _check_state(self, state: StochliteState) -> None:
        if any(f & ServoFlags.OVER_TEMPERATURE for f in state.servo_flags) and self._armed:
            self.servo_faults += 1
            self.set_armed(False)  # a hot servo must not keep holding: torque off

    def _expect_fresh_command(self, now_ns: int) -> None:
        """Also forget the hold: after arming, a link fault or a reset, hold where the joints are then."""
        super()._expect_fresh_command(now_ns)
        self._hold = None

    def _answer(self, now_ns: int) -> tuple[Position | Heartbeat, tuple[float, ...] | None]:
        targets = self._targets(now_ns)
        if targets is None:
            return Heartbeat(), None
        targets = tuple(targets)
        return Position(targets), targets

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
        command = self._live_command(now_ns)
        if command is not None:
            self._hold = None
            goal = np.asarray(command)
        else:
            if self._hold is None:
                self._hold = measured.copy()
            goal = self._hold
        self.holding = command is None
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
