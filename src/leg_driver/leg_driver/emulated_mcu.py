"""What the emulated MCUs share: fault bursts, the pty, the record of received frames and the firmware's tick loop.

The firmware (``docs/serial_protocol.md``) runs a free-running tick: apply the latest command (the
profile's safe state when disarmed, before a HELLO, or when the host has been silent longer than
the watchdog), step the simulation one tick and send one state frame. The pty's slave side is
reached through a stable symlink (``link``), re-pointed when a disconnect fault re-creates the pty.

Faults (:class:`FaultPlan`) come in bursts of ``for_s`` every ``every_s``, cycling through the listed
kinds; ``noise`` adds a random single-frame fault (garbage before it, bad CRC or drop) at that
probability per frame at any time. Each received command frame and each burst is written to
``record`` (CSV), so tests can check the command values that actually arrived.
"""
from __future__ import annotations

import array
import dataclasses
import fcntl
import math
import os
import random
import termios
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .loop_timing import NS_PER_S, DeadlineClock, MissedDeadlines
from .protocol_frames import (PROTOCOL_VERSION, Enable, Error, ErrorCode, FrameDecoder, Heartbeat, Hello, HelloAck,
                              Message, Robot, Status, encode, encode_raw)

SPIN_NS = 200_000
STARVE_EVERY = 10  # a starve burst sends one state frame in this many ticks
UNKNOWN_FRAME_TYPE = 0x7E  # no message has this type

FAULT_EFFECTS = {
    "garbage": "line noise: random bytes instead of state frames",
    "bad_crc": "every state frame with a corrupted CRC",
    "drop": "no state frames",
    "stall": "the MCU freezes: reads and sends nothing (commands queue up in the pty)",
    "delay": "state frames sent delay_ms late",
    "disconnect": "the pty is closed, then re-created behind the same link",
    "nan_position": "state frames report the joint positions as NaN",
    "inf_velocity": "state frames report the joint velocities as +inf",
    "wild_position": "state frames report joint positions of 1e30 rad",
    "starve": f"one state frame in {STARVE_EVERY} (the leg: 50 Hz instead of 500)",
    "frozen_ack": "state frames repeat the ack_seq of the burst's start (commands are still applied)",
    "unknown_frame": "a valid-CRC frame of an unknown type instead of each state frame",
    "reboot": "the MCU reboots at the burst's start: it forgets the session and answers commands NO_SESSION",
    "over_temperature": "state frames carry the over-temperature flag (StochLite: on its first servo)",
}
FAULT_KINDS = tuple(FAULT_EFFECTS)
STATE_VALUE_FAULTS = {"nan_position": ("position", math.nan), "inf_velocity": ("velocity", math.inf),
                      "wild_position": ("position", 1e30)}


@dataclass(frozen=True)
class FaultPlan:
    """Bursts of ``kinds`` (in turn) lasting ``for_s``, the first at ``first_s``, then every ``every_s``."""

    kinds: tuple[str, ...] = ()
    every_s: float = 2.0
    for_s: float = 0.2
    first_s: float = 2.0
    noise: float = 0.0
    delay_ms: float = 20.0

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"faults:={','.join(self.kinds)}: unknown {unknown}; choose from {','.join(FAULT_KINDS)}")
        if self.kinds and not 0 < self.for_s < self.every_s:
            raise ValueError(f"for_s:={self.for_s} must be > 0 and < every_s:={self.every_s}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise:={self.noise} must be a probability in [0, 1]")

    def active(self, elapsed_s: float) -> tuple[int, str] | None:
        """(burst index, kind) of the burst running ``elapsed_s`` after start, or None."""
        if not self.kinds or elapsed_s < self.first_s:
            return None
        burst, into = divmod(elapsed_s - self.first_s, self.every_s)
        return (int(burst), self.kinds[int(burst) % len(self.kinds)]) if into < self.for_s else None


@dataclass
class McuSession:
    """What the firmware knows about the host; reset by HELLO and by a new pty."""

    open: bool = False
    armed: bool = False
    torque: tuple[float, float] = (0.0, 0.0)  # the leg's latest TORQUE
    last_command_ns: int = 0
    ack_seq: int = 0
    watchdog_reported: bool = False


@dataclass
class PtyPort:
    """A pty pair in raw mode; the master is ours (non-blocking), the slave is reached through ``link``."""

    link: Path
    master: int = -1
    slave: int = -1
    slave_name: str = ""
    dropped_writes: int = 0
    written_bytes: int = 0
    read_bytes: int = 0

    def open(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo or line editing: bytes pass untouched
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self.slave)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.slave_name)
        os.replace(tmp, self.link)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1

    def read(self) -> bytes:
        """Every byte the host has written, as a UART's receive FIFO holds it. The kernel passes each write to the
        pty's reader from a worker, so the newest write may not be there yet. Only what FIONREAD counts is read: a
        read that finds nothing waits for that worker, a normal-priority thread that a loaded machine runs late."""
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self.master, termios.FIONREAD, count)
            data = os.read(self.master, count[0]) if count[0] > 0 else b""
        except (BlockingIOError, OSError):
            return b""
        self.read_bytes += len(data)
        return data

    def write(self, data: bytes) -> None:
        """Write what fits; like a UART without flow control, the rest is lost (counted)."""
        try:
            written = os.write(self.master, data)
        except (BlockingIOError, OSError):
            written = 0
        self.written_bytes += written
        if written < len(data):
            self.dropped_writes += 1


@dataclass
class Recorder:
    """CSV of received command frames and fault bursts: ``t_ns,event,seq,<columns>,detail``.

    ``columns``: the command's values (the leg: tau_hip,tau_knee; StochLite: the 12 servo targets)."""

    path: Path | None
    columns: str
    lines: list[str] = field(default_factory=list)

    def add(self, t_ns: int, event: str, seq: int = -1, values=None, detail: str = "") -> None:
        if self.path is not None:
            values = values if values is not None else (0.0,) * len(self.columns.split(","))
            self.lines.append(f"{t_ns},{event},{seq},{','.join(repr(float(v)) for v in values)},{detail}")

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(f"t_ns,event,seq,{self.columns},detail\n" + "".join(f"{x}\n" for x in self.lines))


class EmulatedMcu:
    """The firmware loop; :meth:`run` until ``should_stop()`` is true.

    A profile sets ``ROBOT``, ``JOINTS`` and ``COMMAND`` (its command frame type), makes ``sim``
    before calling this constructor (which opens the port), and implements the methods below that
    raise NotImplementedError.
    """

    ROBOT: Robot
    JOINTS: int
    COMMAND: type

    def __init__(self, link: Path, plan: FaultPlan, rate_hz: int, watchdog_ms: float, seed: int, record: Path | None,
                 columns: str) -> None:
        self.plan = plan
        self.rate_hz = rate_hz
        self.watchdog_ns = int(watchdog_ms * 1e6)
        self.port = PtyPort(link)
        self.recorder = Recorder(record, columns)
        self._rng = random.Random(seed)
        self._decoder = FrameDecoder()
        self._session = McuSession()
        self._seq = 0
        self._delayed: deque[tuple[int, bytes]] = deque()  # (send at ns, frame)
        self._burst: tuple[int, str] | None = None
        self._frozen_ack = 0
        self._t0_ns = 0
        self.ticks = 0
        self.deadlines = 0  # of the tick loop, missed ones included
        self.missed_ticks = 0
        self.port.open()

    def close(self) -> None:
        self.port.close()
        self.port.link.unlink(missing_ok=True)
        self.sim.close()
        self.recorder.save()

    def run(self, should_stop, report: Callable[[str], None], clock: Callable[[], int] = time.monotonic_ns,
            sleep: Callable[[float], None] = time.sleep) -> None:
        """The tick loop at ``rate_hz`` on absolute deadlines; a tick that overran skips the deadlines already past.

        ``report`` gets a line at the end of each second that skipped some (:class:`MissedDeadlines`). ``clock``
        [ns] and ``sleep`` [s] are injectable, so that a test can stall a tick.
        """
        deadlines = DeadlineClock(NS_PER_S // self.rate_hz, SPIN_NS, clock, sleep)
        self._t0_ns = clock()
        missed = MissedDeadlines(deadlines, self._t0_ns)
        while not should_stop():
            deadlines.wait()
            now_ns = clock()
            self.tick(now_ns)
            self.deadlines, self.missed_ticks = deadlines.cycle, deadlines.missed
            line = missed.line(now_ns)
            if line:
                report(line)

    def tick(self, now_ns: int) -> None:
        """One firmware cycle: faults, commands in, physics step, state out."""
        burst = self.plan.active((now_ns - self._t0_ns) / NS_PER_S)
        self._switch_burst(burst, now_ns)
        kind = burst[1] if burst else None
        if kind not in ("stall", "disconnect"):
            self._receive(self.port.read(), now_ns)
        applied = self._step(now_ns)
        self.ticks += 1
        if kind in ("stall", "disconnect") or not self._session.open:
            return
        self._send_state(self._faulty(self._state_message(now_ns, applied), kind), kind, now_ns)

    def _renewed_session(self, now_ns: int, open: bool = False, ack_seq: int = 0) -> McuSession:
        """The session after a HELLO (``open``) or a new pty: what survives of the last one is the profile's rule."""
        raise NotImplementedError

    def _take_command(self, message) -> tuple[float, ...] | None:
        """Take a COMMAND or HEARTBEAT frame; the values to record (None: zeros)."""
        raise NotImplementedError

    def _forget_commands(self) -> None:
        """An ENABLE either way drops the commands received so far."""
        raise NotImplementedError

    def _step(self, now_ns: int):
        """Apply the commands (or the safe state) and step the simulation one tick; what was applied."""
        raise NotImplementedError

    def _state_message(self, now_ns: int, applied) -> Message:
        raise NotImplementedError

    def _overheated(self, state: Message) -> Message:
        """``state`` with the profile's over-temperature flag raised."""
        raise NotImplementedError

    def _faulty(self, state, kind: str | None):
        """The state message as a burst of ``kind`` corrupts its values, ack or flags."""
        if kind in STATE_VALUE_FAULTS:
            name, value = STATE_VALUE_FAULTS[kind]
            return dataclasses.replace(state, **{name: (value,) * len(getattr(state, name))})
        if kind == "frozen_ack":
            return dataclasses.replace(state, ack_seq=self._frozen_ack)
        if kind == "over_temperature":
            return self._overheated(state)
        return state

    def _switch_burst(self, burst: tuple[int, str] | None, now_ns: int) -> None:
        if burst == self._burst:
            return
        if self._burst is not None:
            self.recorder.add(now_ns, "fault_end", self._session.ack_seq, detail=self._burst[1])
            if self._burst[1] == "disconnect":
                self.port.open()
            elif self._burst[1] == "delay":
                for _, frame in self._delayed:
                    self.port.write(frame)
                self._delayed.clear()
        if burst is not None:
            self.recorder.add(now_ns, "fault_start", self._session.ack_seq, detail=burst[1])
            if burst[1] == "disconnect":
                self.port.close()
                self._decoder = FrameDecoder()
                self._session = self._renewed_session(now_ns)
            elif burst[1] == "reboot":
                self._session = self._renewed_session(now_ns)
            self._frozen_ack = self._session.ack_seq
        self._burst = burst

    def _receive(self, data: bytes, now_ns: int) -> None:
        crc_errors = self._decoder.crc_errors
        for frame in self._decoder.feed(data):
            message, s = frame.message, self._session
            if isinstance(message, Hello):
                if message.version != PROTOCOL_VERSION:
                    self._send(Error(ErrorCode.VERSION_MISMATCH, PROTOCOL_VERSION))
                elif message.robot != self.ROBOT:
                    self._send(Error(ErrorCode.ROBOT_MISMATCH, self.ROBOT))
                else:
                    self._session = self._renewed_session(now_ns, open=True, ack_seq=frame.seq)
                    self._send(HelloAck(PROTOCOL_VERSION, self.JOINTS, self.rate_hz, self.ROBOT))
                    self.recorder.add(now_ns, "HELLO", frame.seq)
            elif not s.open:
                self._send(Error(ErrorCode.NO_SESSION, 0))
            elif isinstance(message, (self.COMMAND, Heartbeat)):
                s.last_command_ns, s.ack_seq, s.watchdog_reported = now_ns, frame.seq, False
                self.recorder.add(now_ns, type(message).__name__.upper(), frame.seq, self._take_command(message))
            elif isinstance(message, Enable):
                s.armed = message.armed
                self._forget_commands()
                self.recorder.add(now_ns, "ENABLE", frame.seq, detail=str(int(message.armed)))
        if self._decoder.crc_errors > crc_errors and self._session.open:
            self._send(Error(ErrorCode.BAD_CRC, self._decoder.crc_errors % 65536))

    def _host_silent(self, now_ns: int) -> bool:
        """Whether the host has been silent longer than the watchdog; reported once to an open, armed session."""
        s = self._session
        silent_ns = now_ns - s.last_command_ns
        if s.open and s.armed and silent_ns > self.watchdog_ns and not s.watchdog_reported:
            s.watchdog_reported = True
            self._send(Error(ErrorCode.WATCHDOG, min(silent_ns // 1_000_000, 65535)))
        return silent_ns > self.watchdog_ns

    def _status(self, now_ns: int) -> Status:
        """ARMED, and WATCHDOG while armed and the host is silent too long."""
        s = self._session
        status = Status(0)
        if s.armed:
            status |= Status.ARMED
        if s.armed and now_ns - s.last_command_ns > self.watchdog_ns:
            status |= Status.WATCHDOG
        return status

    def _frame(self, message: Message) -> bytes:
        self._seq += 1
        return encode(message, self._seq)

    def _send(self, message: Message) -> None:
        if self.port.master >= 0:
            self.port.write(self._frame(message))

    def _send_state(self, state: Message, kind: str | None, now_ns: int) -> None:
        if kind == "starve" and self.ticks % STARVE_EVERY:
            return
        frame = encode_raw(UNKNOWN_FRAME_TYPE, b"", self._seq) if kind == "unknown_frame" else self._frame(state)
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
        elif kind == "delay":
            self._delayed.append((now_ns + int(self.plan.delay_ms * 1e6), frame))
        while self._delayed and self._delayed[0][0] <= now_ns:
            self.port.write(self._delayed.popleft()[1])
        if kind != "delay":
            self.port.write(frame)
