"""What the leg's torque loop and StochLite's position loop share: one cycle over the serial link on a thread.

Each cycle: read the MCU's frames, check the link, let the profile decide its command, send it
(after an ENABLE while the MCU's arming differs from ours), then hand the newest valid state on. The
link is faulty when it is down, when the newest state is invalid (:func:`state_problem`), when no
valid state came within ``state_timeout_cycles``, or when the MCU's acknowledgement is
``max_ack_lag_cycles`` frames behind; the fault ends only after ``recovery_cycles`` healthy cycles in a
row. A command counts only if it is newer than ``command_timeout_s`` and arrived after the last
arming, link fault or reset; a lapse is a watchdog trip. What the robot does then (its safe state) is
the profile's business. Every invalid state, dropped frame, MCU error and MCU flag is counted.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .loop_timing import NS_PER_S, DeadlineClock, PeriodStats
from .protocol_frames import Enable, Message, Status
from .serial_link import SerialLink

ENABLE_RESEND_CYCLES = 10
# With state_wait_us, the loop locks its phase to the MCU's: it wakes just before the state arrives, waits for it
# and answers at once, so that the command reaches the MCU well before its next tick. A state already waiting at
# the deadline moves the deadlines PHASE_STEP_NS earlier; one that came after more than PHASE_TARGET_NS of waiting
# moves them later by half the excess.
PHASE_STEP_NS = 125_000
PHASE_TARGET_NS = 250_000
STATE_POLL_S = 50e-6  # while a cycle waits for its state, read this often
COUNTED_FLAGS = (Status.WATCHDOG, Status.OVER_TEMPERATURE)  # counted when raised


def state_problem(state, joint_min, joint_max, margin_rad: float, max_velocity: float) -> str:
    """What makes a state impossible ('' if nothing): a value that is not finite, a position more than
    ``margin_rad`` outside [``joint_min``, ``joint_max``], or a speed above ``max_velocity``
    (docs/serial_protocol.md, "Invalid STATE values")."""
    for name in ("position", "velocity", "torque"):
        values = getattr(state, name)
        for k, v in enumerate(values):
            if not math.isfinite(v):
                return f"{name}[{k}] = {v}"
    for k, q in enumerate(state.position):
        low, high = joint_min[k] - margin_rad, joint_max[k] + margin_rad
        if not low <= q <= high:
            return f"position[{k}] = {q:.4g} rad, outside [{low:.3g}, {high:.3g}] (joint limits +- state_margin_rad)"
    for k, v in enumerate(state.velocity):
        if abs(v) > max_velocity:
            return f"velocity[{k}] = {v:.4g} rad/s, faster than state_max_velocity ({max_velocity:g})"
    return ""


def values_problem(values: list, count: int, expected: str) -> str:
    """What is wrong with a command of ``count`` values (``expected`` says which), or '' if it can be applied."""
    if len(values) != count:
        return f"has {len(values)} values, expected {count} {expected}"
    if not all(math.isfinite(v) for v in values):
        return "contains NaN or inf (check the policy output before publishing)"
    return ""


class CommandSlot:
    """Latest command and its arrival time, swapped as one tuple (no lock); malformed commands are counted.

    ``fallback`` replaces a malformed command (None: it is ignored and the previous one stays)."""

    def __init__(self, problem: Callable[[list], str], fallback: tuple[float, ...] | None) -> None:
        self.latest: tuple[tuple[float, ...] | None, int] = (fallback, 0)
        self.rejected = 0
        self._problem = problem
        self._fallback = fallback

    def offer(self, values, now_ns: int) -> str:
        """Take ``values`` (or count them as rejected); return the problem ('' if none)."""
        values = list(values)
        problem = self._problem(values)
        if not problem:
            self.latest = (tuple(float(v) for v in values), now_ns)
        else:
            self.rejected += 1
            if self._fallback is not None:
                self.latest = (self._fallback, now_ns)
        return problem


@dataclass
class ResetRequest:
    """A move of the joints to ``target`` for the reset service; ``done`` is set once it succeeded or failed."""

    target: tuple[float, ...] | np.ndarray
    deadline_ns: int
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""
    settled: int = 0


class McuLoop:
    """The cycle shared by both profiles; ``on_state`` and ``on_reset_done`` run on the loop thread.

    A profile sets ``STATE`` (its state frame type), ``SAMPLE`` (built from the state, its arrival
    time and the profile's answer), ``STOP_FRAMES`` (sent before the port closes) and
    ``THREAD_NAME``, and implements :meth:`_answer`. ``limits`` are the profile's; ``settings`` has at
    least ``rate_hz``, ``spin_us``, ``command_timeout_s``, ``state_timeout_cycles``, ``state_wait_us``,
    ``max_ack_lag_cycles``, ``recovery_cycles``, ``state_margin_rad`` and ``state_max_velocity``.
    ``clock`` (monotonic time [ns]) and ``sleep`` [s] are the loop's only sources of time; tests inject a stepped
    clock and drive the loop cycle by cycle with :meth:`step`.
    """

    STATE: type
    SAMPLE: type
    STOP_FRAMES: tuple[Message, ...]
    THREAD_NAME: str

    def __init__(self, link: SerialLink, limits, settings, commands: CommandSlot, on_state: Callable[[object], None],
                 on_reset_done: Callable[[], None] = lambda: None, record_timing: bool = False,
                 clock: Callable[[], int] = time.monotonic_ns, sleep: Callable[[float], None] = time.sleep) -> None:
        self.link = link
        self.limits = limits
        self.settings = settings
        self.commands = commands
        self.stats = PeriodStats()
        self.watchdog_trips = 0
        self.late_acks = 0  # new states whose MCU had not yet applied the newest frame sent: it came after its tick
        self.link_faults = 0
        self.invalid_states = 0
        self.mcu_flags = {flag.name: 0 for flag in COUNTED_FLAGS}
        self.fault = "starting"  # why the link is unusable ('' when healthy), or what it is recovering from
        self.last_fault = ""  # the newest link problem, kept after it ended
        self.mcu_armed = False
        self.latest_state = None
        # (deadline ns, lateness ns, cycle index: its gaps are the missed cycles, as deadlines move with the phase)
        self.timing_log: list[tuple[int, int, int]] | None = [] if record_timing else None
        self._on_state = on_state
        self._on_reset_done = on_reset_done
        # called with each new valid state and its arrival [ns] before the loop answers; a command it returns
        # counts as arrived then (leg_driver.onboard_runner)
        self.policy: Callable[[object, int], tuple[float, ...] | None] | None = None
        self._armed = False
        self._fresh_after_ns = 0  # commands older than this are ignored (arming, fault, reset)
        self._command_live = False
        self._state_cycle = -1
        self._ack_lag = 0
        self._invalid = ""  # what is wrong with the newest state ('' if valid)
        self._healthy_cycles = 0
        self._enable_cycle = -ENABLE_RESEND_CYCLES
        self._reset: ResetRequest | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
        self._now = clock
        self._sleep = sleep
        self.clock = DeadlineClock(NS_PER_S // settings.rate_hz, settings.spin_us * 1000, clock, sleep)

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def rejected(self) -> int:
        return self.commands.rejected

    def offer(self, values, now_ns: int) -> str:
        """Take a command; return what is wrong with it ('' if nothing)."""
        return self.commands.offer(values, now_ns)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the loop; the MCU gets the ``STOP_FRAMES`` (ending in a disarm) first if the link is up."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        now = self._now()
        if self.link.connected:
            for message in self.STOP_FRAMES:
                self.link.send(message, now)
        self.link.close()

    def set_armed(self, armed: bool) -> None:
        """Arm or disarm; either way only commands sent after this call count."""
        self._expect_fresh_command(self._now())
        self._armed = armed

    def _link_counters(self) -> dict[str, object]:
        """Timing of the cycles since the last call, and the link's and watchdog's counters since start."""
        link = self.link
        return {**self.stats.take_window(), "missed_cycles": self.clock.missed, "total_cycles": self.clock.cycle,
                "crc_errors": link.crc_errors, "resyncs": link.resyncs, "dropped_frames": link.dropped_frames,
                "skipped_bytes": link.skipped_bytes, "invalid_states": self.invalid_states,
                "reconnects": link.reconnects, "link_losses": link.link_losses, "link_faults": self.link_faults,
                "watchdog_trips": self.watchdog_trips, "late_acks": self.late_acks,
                "rejected_commands": self.commands.rejected}

    def _mcu_counters(self) -> dict[str, object]:
        """The MCU's errors, raised flags and arming, the link's state and the newest link problem (the loop's own
        arming: :func:`~leg_driver.arming.arming_report`)."""
        return {"mcu_errors": dict(self.link.mcu_errors), "mcu_flags": dict(self.mcu_flags),
                "link": self.link.state.value, "mcu_armed": self.mcu_armed, "last_fault": self.last_fault}

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
        except Exception as error:  # the thread ends: say so where the fault is read (arming, /diagnostics)
            self.fault = self.last_fault = f"the control loop stopped: {error!r}"
            raise

    def step(self) -> None:
        """Wait for the next deadline, then run one :meth:`cycle` (the thread's loop; tests call it directly)."""
        lateness = self.clock.wait()
        self.stats.add(lateness)
        if self.timing_log is not None:
            self.timing_log.append((self.clock.deadline_ns, lateness, self.clock.cycle))
        self.cycle(self._now())

    def cycle(self, now_ns: int) -> None:
        """One cycle: frames in, link check, the profile's answer out, the new state handed on."""
        frames = self.link.poll(now_ns)
        if self.settings.state_wait_us and self.link.connected:
            frames, now_ns = self._lock_phase(frames, now_ns)
        new_state = None
        for frame in frames:
            if isinstance(frame.message, self.STATE):
                new_state = self._valid(frame.message)
        cycle = self.clock.cycle
        if new_state is not None:
            self._count_flags(new_state.status)
            self.latest_state = new_state
            self.mcu_armed = bool(new_state.status & Status.ARMED)
            self._state_cycle = cycle
            self._ack_lag = (self.link.sent_seq - new_state.ack_seq) % 65536
            self.late_acks += self._ack_lag > 0
            self._check_state(new_state)
        self._check_link(cycle, now_ns)
        if new_state is not None and self.policy is not None:
            command = self.policy(new_state, now_ns)
            if command is not None:
                self.commands.offer(command, now_ns)
        message, answer = self._answer(now_ns)
        if self.link.connected:
            if self._armed != self.mcu_armed and cycle - self._enable_cycle >= ENABLE_RESEND_CYCLES:
                self._enable_cycle = cycle
                self.link.send(Enable(self._armed), now_ns)
            self.link.send(message, now_ns)
        if new_state is not None:
            self._on_state(self.SAMPLE(new_state, now_ns, answer))

    def _has_state(self, frames) -> bool:
        return any(isinstance(frame.message, self.STATE) for frame in frames)

    def _lock_phase(self, frames: list, now_ns: int) -> tuple[list, int]:
        """The cycle's frames, after waiting for its state if none is there yet, and the time then; moves the
        deadlines towards the state's arrival (see :data:`PHASE_STEP_NS`)."""
        if self._has_state(frames):
            self.clock.shift(-PHASE_STEP_NS)
            return frames, now_ns
        more, now_ns = self._await_state(now_ns)
        waited_ns = now_ns - self.clock.deadline_ns
        if self._has_state(more) and waited_ns > PHASE_TARGET_NS:
            self.clock.shift((waited_ns - PHASE_TARGET_NS) // 2)
        return frames + more, now_ns

    def _await_state(self, now_ns: int) -> tuple[list, int]:
        """Keep reading until a state arrives or ``state_wait_us`` past the deadline: the frames and the time then."""
        give_up_ns = self.clock.deadline_ns + self.settings.state_wait_us * 1000
        frames: list = []
        while now_ns < give_up_ns:
            self._sleep(STATE_POLL_S)
            now_ns = self._now()
            new = self.link.poll(now_ns)
            frames += new
            if self._has_state(new):
                break
        return frames, now_ns

    def _valid(self, state):
        """``state`` if it passes :meth:`_state_problem`, else None (counted; the link is faulty until a valid one)."""
        self._invalid = self._state_problem(state)
        if self._invalid:
            self.invalid_states += 1
            return None
        return state

    def _state_problem(self, state) -> str:
        """What makes ``state`` impossible for this profile ('' if nothing)."""
        s = self.settings
        return state_problem(state, self.limits.joint_min, self.limits.joint_max, s.state_margin_rad,
                             s.state_max_velocity)

    def _count_flags(self, status: Status) -> None:
        """Count each flag of :data:`COUNTED_FLAGS` that ``status`` raises and the last valid state did not."""
        before = self.latest_state.status if self.latest_state is not None else Status(0)
        for flag in COUNTED_FLAGS:
            if status & flag and not before & flag:
                self.mcu_flags[flag.name] += 1

    def _check_state(self, state) -> None:
        """A profile's reaction to a new valid state (nothing by default)."""

    def _answer(self, now_ns: int) -> tuple[Message, object]:
        """The frame to send this cycle, and what to hand on with the state as the answer to it."""
        raise NotImplementedError

    def _check_link(self, cycle: int, now_ns: int) -> None:
        """Update ``fault``: a problem this cycle starts (or restarts) it; ``recovery_cycles`` healthy ones end it."""
        problem = self._link_problem(cycle)
        if problem:
            if not self.fault:
                self.link_faults += 1
            self.fault = self.last_fault = problem
            self._healthy_cycles = 0
        elif self.fault:
            self._healthy_cycles += 1
            needed = self.settings.recovery_cycles
            if self._healthy_cycles >= needed:
                self.fault = ""
                self._expect_fresh_command(now_ns)  # after a fault, only a command sent since counts
            else:
                self.fault = (f"recovering ({self._healthy_cycles} of {needed} healthy cycles) from: "
                              f"{self.last_fault or 'starting'}")

    def _link_problem(self, cycle: int) -> str:
        """What makes the link unusable this cycle ('' if nothing)."""
        s = self.settings
        if not self.link.connected:
            return f"link {self.link.state.value}" + (f": {self.link.last_error}" if self.link.last_error else "")
        if self._invalid:
            return f"invalid state from the MCU: {self._invalid}"
        if self._state_cycle < 0 or cycle - self._state_cycle > s.state_timeout_cycles:
            return f"no state from the MCU for more than {s.state_timeout_cycles} cycles"
        if self._ack_lag >= s.max_ack_lag_cycles:
            return f"the MCU acknowledges commands {self._ack_lag} frames late"
        return ""

    def _expect_fresh_command(self, now_ns: int) -> None:
        """From now on only commands that arrive after ``now_ns`` count."""
        self._fresh_after_ns = now_ns

    def _live_command(self, now_ns: int) -> tuple[float, ...] | None:
        """The latest command if it counts (fresh, within the watchdog), else None; a lapse is a watchdog trip."""
        command, received_ns = self.commands.latest
        fresh = received_ns > self._fresh_after_ns
        live = command is not None and fresh and now_ns - received_ns <= self.settings.command_timeout_s * NS_PER_S
        if self._command_live and not live and fresh:
            self.watchdog_trips += 1
        self._command_live = live
        return command if live else None

    def _deadline_after(self, timeout_s: float) -> int:
        """The loop's clock [ns] ``timeout_s`` from now."""
        return self._now() + int(timeout_s * NS_PER_S)

    def _start_reset(self, request: ResetRequest, refusal: str) -> ResetRequest:
        """Run ``request`` (a running one is superseded), or refuse it with ``refusal`` while disarmed."""
        if not self._armed:
            request.message = refusal
            request.done.set()
        else:
            previous, self._reset = self._reset, request
            if previous is not None:
                previous.message = "superseded by a newer reset"
                previous.done.set()
        return request

    def _finish_reset(self, ok: bool, message: str) -> None:
        """End the running reset; no motion after it until a fresh command."""
        request, self._reset = self._reset, None
        self._expect_fresh_command(self._now())
        request.ok, request.message = ok, message
        request.done.set()
        self._on_reset_done()
