"""The control loop in a child process, so that it shares no interpreter lock with rclpy.

Measured (bench/driver_loop.py): with the loop thread and the rclpy executor in one process, the loop's
p99 period error was 0.18-1.2 ms with stalls up to 28 ms, whatever their priorities; here 0.003-0.04 ms.
:class:`LoopProcess` is the parent's handle: commands, arming and homing go down one pipe; states,
homing results, counters and arming reports come back up another, read by a thread of the parent. The
child needs no ROS; it stops (zero torque, disarm) when the parent says so or disappears.
"""
from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .arming import arming_report
from .control_loop import ControlLoop, HomeRequest, LoopSettings, SafetyLimits, StateSample, effort_commands
from .loop_timing import request_realtime
from .serial_link import SerialLink

COUNTERS_TIMEOUT_S = 1.0
GIL_SWITCH_INTERVAL_S = 0.0002  # the loop thread waits at most this for the interpreter lock (default 5 ms)
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LinkConfig:
    port: str
    baud: int
    handshake_timeout_ns: int
    reconnect_period_ns: int


@dataclass
class HomeResult:
    """The parent's view of a homing request: ``done`` is set when the child reports its end."""

    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""


def _child(down, up, link: LinkConfig, limits: SafetyLimits, settings: LoopSettings, record_timing: bool) -> None:
    """The child process: runs the loop and obeys the parent's messages until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    # as high as the loop thread: it holds the interpreter lock at times, and must not then wait for a core
    request_realtime(settings.realtime_priority)
    send_lock = threading.Lock()
    homing: list[HomeRequest] = []

    def send(message) -> None:
        with send_lock:
            up.send(message)

    def home_done() -> None:
        if homing:
            request = homing.pop()
            send(("home", request.ok, request.message))

    loop = ControlLoop(SerialLink(link.port, link.baud, link.handshake_timeout_ns, link.reconnect_period_ns),
                       limits, settings, lambda sample: send(("state", sample)), home_done, record_timing)
    loop.start()
    try:
        while True:
            try:
                kind, *args = down.recv()
            except EOFError:  # the parent is gone
                break
            if kind == "cmd":
                loop.commands.offer(*args)
            elif kind == "arm":
                loop.set_armed(*args)
            elif kind == "home":
                homing[:] = [request := loop.start_home(*args)]
                if request.done.is_set():  # refused at once (disarmed)
                    home_done()
            elif kind == "counters":
                send(("counters", loop.counters(), arming_report(loop)))
            elif kind == "arming":
                send(("arming", arming_report(loop)))
            elif kind == "stop":
                break
    finally:
        loop.stop()
        send(("stopped", loop.timing_log))


class LoopProcess:
    """Parent-side handle of a :class:`ControlLoop` in a spawned child process.

    ``on_state`` and ``on_home_done`` run on the parent's reader thread.
    """

    def __init__(self, link: LinkConfig, limits: SafetyLimits, settings: LoopSettings,
                 on_state: Callable[[StateSample], None], on_home_done: Callable[[], None],
                 record_timing: bool = False) -> None:
        context = multiprocessing.get_context("spawn")  # a fork would copy rclpy's threads and locks
        down_r, self._down = context.Pipe(duplex=False)
        self._up, up_w = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(down_r, up_w, link, limits, settings, record_timing),
                                        name="leg_control_loop", daemon=True)
        self._on_state = on_state
        self._on_home_done = on_home_done
        self._priority = settings.realtime_priority
        self._send_lock = threading.Lock()
        self._counters: dict[str, object] = {}
        self._counters_ready = threading.Event()
        self._arming: dict[str, object] = {}  # the child's newest arming report (also part of its counters)
        self._arming_ready = threading.Event()
        self._home: HomeResult | None = None
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._read, name="leg_loop_reader", daemon=True)
        self.timing_log: list[tuple[int, int]] | None = None
        self._commands = effort_commands()  # checked here, where rejections are counted and logged

    def start(self) -> None:
        self._process.start()
        self._reader.start()

    @property
    def rejected(self) -> int:
        return self._commands.rejected

    @property
    def armed(self) -> bool:
        """The loop's own arming (it disarms itself on over-temperature), as of the child's last report."""
        return bool(self._arming.get("armed", False))

    @property
    def fault(self) -> str:
        """Why the link is unusable ('' when healthy), as of the child's last report."""
        return str(self._arming.get("fault", "starting"))

    def offer(self, values, now_ns: int) -> str:
        """Pass an effort command on (zero torque if malformed); return the problem ('' if none)."""
        problem = self._commands.offer(values, now_ns)
        self._send(("cmd", *self._commands.latest))
        return problem

    def set_armed(self, armed: bool) -> None:
        self._send(("arm", armed))

    def start_home(self, target, timeout_s: float) -> HomeResult:
        self._home = HomeResult()
        self._send(("home", tuple(float(x) for x in target), timeout_s))
        return self._home

    def request_arming(self) -> Callable[[], dict[str, object] | None]:
        """Ask the child for its :func:`~leg_driver.arming.arming_report` without waiting; a function that returns
        it once the answer arrived (None before)."""
        self._arming_ready.clear()
        self._send(("arming",))
        return lambda: self._arming if self._arming_ready.is_set() else None

    def counters(self) -> dict[str, object]:
        """The loop's counters and arming report, fresh from the child (the last ones if it does not answer within
        1 s)."""
        self._counters_ready.clear()
        self._send(("counters",))
        self._counters_ready.wait(COUNTERS_TIMEOUT_S)
        return self._counters

    def stop(self) -> None:
        """Stop the child (zero torque, disarm, port closed) and collect its timing log."""
        self._send(("stop",))
        self._stopped.wait(STOP_TIMEOUT_S)
        self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def _send(self, message) -> None:
        with self._send_lock:
            try:
                self._down.send(message)
            except (BrokenPipeError, OSError):
                pass  # the child is gone; stop() reaps it

    def _read(self) -> None:
        request_realtime(max(self._priority - 1, 0))  # states reach the executor without waiting for the load
        while True:
            try:
                kind, *args = self._up.recv()
            except (EOFError, OSError):
                self._stopped.set()
                return
            if kind == "state":
                self._on_state(args[0])
            elif kind == "home" and self._home is not None:
                self._home.ok, self._home.message = args
                self._home.done.set()
                self._on_home_done()
            elif kind == "counters":
                counters, self._arming = args
                self._counters = {**self._arming, **counters}
                self._counters_ready.set()
            elif kind == "arming":
                self._arming = args[0]
                self._arming_ready.set()
            elif kind == "stopped":
                self.timing_log = args[0]
                self._stopped.set()
                return
