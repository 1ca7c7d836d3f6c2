"""Absolute-deadline loop clock, real-time priority and period statistics, for the driver and the emulator."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

import numpy as np

NS_PER_S = 1_000_000_000
MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h>


def lock_memory() -> str:
    """Keep every page of this process in RAM (``mlockall``), so that a realtime loop never waits on a page fault
    while the machine reclaims memory for others; say what it got."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        return f"memory not locked ({os.strerror(ctypes.get_errno())}): grant CAP_IPC_LOCK or a memlock limit"
    return "memory locked"


def request_realtime(priority: int) -> str:
    """Put the calling thread in SCHED_FIFO at ``priority`` (0: leave it); say what it got."""
    if priority <= 0:
        return "normal scheduling (realtime_priority 0)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError) as error:
        return (f"normal scheduling: SCHED_FIFO {priority} refused ({error}); grant CAP_SYS_NICE or an rtprio "
                f"limit (/etc/security/limits.conf) for tighter timing")
    return f"SCHED_FIFO priority {priority}"


class DeadlineClock:
    """Wakes at ``start + k * period`` for k = 1, 2, ...: sleeps until ``spin_ns`` before, then spins.

    A wake-up later than a whole period skips the deadlines already past (counted in ``missed``), so
    the loop never runs a burst of catch-up cycles. ``cycle`` is the index k of the current deadline.
    ``clock`` [ns] and ``sleep`` [s] are injectable so that tests can step time deterministically.
    """

    def __init__(self, period_ns: int, spin_ns: int, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.period_ns = period_ns
        self.spin_ns = spin_ns
        self.cycle = 0
        self.missed = 0
        self._clock = clock
        self._sleep = sleep
        self._start = clock()

    @property
    def deadline_ns(self) -> int:
        return self._start + self.cycle * self.period_ns

    def shift(self, ns: int) -> None:
        """Move every later deadline by ``ns`` (the loop locks its phase to the MCU's states)."""
        self._start += ns

    def wait(self) -> int:
        """Wait for the next deadline; return the lateness of the wake-up [ns] (>= 0)."""
        self.cycle += 1
        now = self._clock()
        late_cycles = (now - self.deadline_ns) // self.period_ns
        if late_cycles > 0:  # already a whole period behind: skip to the newest deadline
            self.missed += late_cycles
            self.cycle += late_cycles
        deadline = self.deadline_ns
        sleep_ns = deadline - self.spin_ns - now
        if sleep_ns > 0:
            self._sleep(sleep_ns / NS_PER_S)
        now = self._clock()
        while now < deadline:
            now = self._clock()
        return now - deadline


class MissedDeadlines:
    """Lines about the deadlines a :class:`DeadlineClock` skipped: one per window of at least ``window_ns`` in which
    it skipped some, with the window's count and share and the totals since start."""

    def __init__(self, clock: DeadlineClock, now_ns: int, window_ns: int = NS_PER_S) -> None:
        self._clock = clock
        self._window_ns = window_ns
        self._window = (now_ns, clock.missed, clock.cycle)  # start [ns], missed and deadlines then

    def line(self, now_ns: int) -> str:
        """The line of the window that ends at ``now_ns``; '' while the window lasts or if it skipped nothing."""
        start_ns, missed, deadlines = self._window
        if now_ns - start_ns < self._window_ns:
            return ""
        clock = self._clock
        self._window = (now_ns, clock.missed, clock.cycle)
        window_missed, window_deadlines = clock.missed - missed, clock.cycle - deadlines
        if not window_missed:
            return ""
        return (f"missed {window_missed} of {window_deadlines} ticks in the last {(now_ns - start_ns) / NS_PER_S:.1f} s "
                f"({100 * window_missed / window_deadlines:.1f} %); {clock.missed} of {clock.cycle} since start "
                f"({100 * clock.missed / clock.cycle:.2f} %)")


class PeriodStats:
    """Wake-up lateness of each cycle in a window, and totals since start."""

    def __init__(self) -> None:
        self._window: list[int] = []
        self.cycles = 0

    def add(self, lateness_ns: int) -> None:
        self._window.append(lateness_ns)
        self.cycles += 1

    def take_window(self) -> dict[str, float]:
        """p50, p99 and max lateness [ms] and the cycle count of the window so far; starts a new window."""
        window, self._window = self._window, []
        if not window:
            return {"cycles": 0, "period_p50_ms": 0.0, "period_p99_ms": 0.0, "period_max_ms": 0.0}
        ms = np.asarray(window) / 1e6
        return {"cycles": len(window), "period_p50_ms": float(np.percentile(ms, 50)),
                "period_p99_ms": float(np.percentile(ms, 99)), "period_max_ms": float(ms.max())}
