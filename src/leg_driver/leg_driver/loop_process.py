"""The control loop in a child process, so that it shares no interpreter lock with rclpy.

Measured (bench/driver_loop.py): with the loop thread and the rclpy executor in one process, the loop's
p99 period error was 0.18-1.2 ms with stalls up to 28 ms, whatever their priorities; here 0.003-0.04 ms.
:class:`LoopProcess` is the parent's handle: commands, arming and homing go down one pipe; states,
homing results, counters and arming reports come back up another, read by a thread of the parent. The
child needs no ROS; it stops (zero torque, disarm) when the parent says so or disappears. Given
:class:`~leg_driver.onboard_runner.RunnerSettings`, the child also runs the policy runner in the loop
(:mod:`~leg_driver.onboard_runner`): policies go down, its batches and episode reports come up to ``on_runner``.
"""
from __future__ import annotations

import collections
import gc
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .arming import arming_report
from .control_loop import ControlLoop, HomeRequest, LoopSettings, SafetyLimits, StateSample, effort_commands
from .loop_timing import lock_memory, request_realtime
from .onboard_runner import RUNNER_MESSAGES, OnboardRunner, RunnerSettings
from .runner_profiles import LegProfile
from .serial_link import SerialLink

COUNTERS_TIMEOUT_S = 1.0
STATE_BACKLOG = 64  # states waiting for the pipe; more are dropped (128 ms at 500 Hz)
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


class Outbox:
    """The child's messages to the parent, sent by a thread of their own: the loop never waits for the pipe (a busy
    parent reads late). A state is dropped (counted) while :data:`STATE_BACKLOG` messages wait; other messages never."""

    def __init__(self, up) -> None:
        self.dropped_states = 0
        self._up = up
        self._messages: collections.deque = collections.deque()
        self._ready = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._send, name="loop_outbox", daemon=True)
        self._thread.start()

    def put(self, message) -> None:
        self._messages.append(message)
        self._ready.set()

    def put_state(self, message) -> None:
        if len(self._messages) >= STATE_BACKLOG:
            self.dropped_states += 1
            return
        self.put(message)

    def close(self) -> None:
        """Send what is waiting, then stop."""
        self._closing = True
        self._ready.set()
        self._thread.join(STOP_TIMEOUT_S)

    def _send(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            while self._messages:
                message = self._messages.popleft()
                try:
                    self._up.send(message)
                except (BrokenPipeError, OSError):
                    return  # the parent is gone
            if self._closing:
                return


def _child(down, up, link: LinkConfig, limits: SafetyLimits, settings: LoopSettings, record_timing: bool,
           runner: RunnerSettings | None, profile: LegProfile | None) -> None:
    """The child process: runs the loop and obeys the parent's messages until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    # as high as the loop thread: it holds the interpreter lock at times, and must not then wait for a core
    if settings.realtime_priority > 0:
        request_realtime(settings.realtime_priority)
        lock_memory()  # no page fault stalls the loop while the learners allocate
    homing: list[HomeRequest] = []
    outbox = Outbox(up)
    send = outbox.put

    def home_done() -> None:
        if homing:
            request = homing.pop()
            send(("home", request.ok, request.message))

    loop = ControlLoop(SerialLink(link.port, link.baud, link.handshake_timeout_ns, link.reconnect_period_ns),
                       limits, settings, lambda sample: outbox.put_state(("state", sample)), home_done, record_timing)
    onboard = OnboardRunner(runner, profile, loop, send) if runner is not None else None
    if onboard is not None:
        loop.policy = onboard.command
    gc.freeze()  # the collector skips what start-up made: a full collection of it stalled a cycle for ~10 ms
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
                send(("counters", {**loop.counters(), "dropped_states": outbox.dropped_states}, arming_report(loop)))
            elif kind == "arming":
                send(("arming", arming_report(loop)))
            elif kind == "policy":
                onboard.offer_policy(*args)
            elif kind == "resume_at":
                onboard.resume_at(*args)
            elif kind == "run":
                onboard.run_episodes()
            elif kind == "stop":
                break
    finally:
        if onboard is not None:
            onboard.stop()
        loop.stop()
        send(("stopped", loop.timing_log))
        outbox.close()


class LoopProcess:
    """Parent-side handle of a :class:`ControlLoop` in a spawned child process.

    ``on_state``, ``on_home_done`` and ``on_runner`` (the runner's messages, given ``runner`` settings and the leg's
    ``profile``) run on the parent's reader thread.
    """

    def __init__(self, link: LinkConfig, limits: SafetyLimits, settings: LoopSettings,
                 on_state: Callable[[StateSample], None], on_home_done: Callable[[], None],
                 record_timing: bool = False, runner: RunnerSettings | None = None, profile: LegProfile | None = None,
                 on_runner: Callable[[tuple], None] = lambda message: None) -> None:
        context = multiprocessing.get_context("spawn")  # a fork would copy rclpy's threads and locks
        down_r, self._down = context.Pipe(duplex=False)
        self._up, up_w = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, name="leg_control_loop", daemon=True,
                                        args=(down_r, up_w, link, limits, settings, record_timing, runner, profile))
        self._on_state = on_state
        self._on_home_done = on_home_done
        self._on_runner = on_runner
        self._priority = settings.realtime_priority
        self._send_lock = threading.Lock()
        self._counters: dict[str, object] = {}
        self._counters_ready = threading.Event()
        self._arming: dict[str, object] = {}  # the child's newest arming report (also part of its counters)
        self._arming_ready = threading.Event()
        self._home: HomeResult | None = None
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._read, name="leg_loop_reader", daemon=True)
        self.timing_log: list[tuple[int, int, int]] | None = None
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

    def offer_policy(self, actor, version: int) -> None:
        """The runner's newest policy (a NumpyActor); it takes over at the next episode."""
        self._send(("policy", actor, version))

    def resume_at(self, env_steps: int, epoch: int) -> None:
        """The runner continues a run at ``env_steps`` after ``epoch`` epochs (before :meth:`run_episodes`)."""
        self._send(("resume_at", env_steps, epoch))

    def run_episodes(self) -> None:
        """The runner homes the (armed) robot and runs its episodes."""
        self._send(("run",))

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
            elif kind in RUNNER_MESSAGES:
                self._on_runner((kind, *args))
            elif kind == "stopped":
                self.timing_log = args[0]
                self._stopped.set()
                return
