"""`mdemorl emulate`: its arguments, errors, fault schedule, scheduling and live report of missed ticks."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from leg_driver.emulated_mcu import FaultPlan
from leg_driver.emulator import EmulatedLegMcu

STALL_S = 0.3  # a SIGSTOP this long skips about 150 ticks at 500 Hz
LINE_TIMEOUT_S = 30.0  # the emulator is stopped (and its output ends) if the awaited line has not come by then


@pytest.mark.parametrize("words, message", [
    (["robot:=dog"], "robot:=dog has no emulated MCU; use robot:=leg or robot:=stochlite"),
    (["faults:=fire"], "faults:=fire: unknown ['fire']; choose from garbage,bad_crc,drop,stall,delay,disconnect"),
    (["faults:=drop", "for_s:=3", "every_s:=2"], "for_s:=3.0 must be > 0 and < every_s:=2.0"),
    (["noise:=often"], "noise:=often must be a number"),
    (["colour:=red"], "argument 'colour:=red' is not name:=value with a name of: robot, link"),
    (["realtime_priority:=100"], "realtime_priority:=100 must be in 0..99 (0: normal scheduling)"),
])
def test_bad_arguments_are_named_with_the_fix(words, message):
    proc = subprocess.run([sys.executable, "-m", "stochlite_bringup.launcher", "emulate", *words],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_fault():
    proc = subprocess.run([sys.executable, "-m", "stochlite_bringup.launcher", "emulate", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for kind in ("garbage", "bad_crc", "drop", "stall", "delay", "disconnect"):
        assert f"  {kind}: " in proc.stdout


def test_fault_bursts_take_the_kinds_in_turn():
    plan = FaultPlan(("drop", "stall"), every_s=1.0, for_s=0.2, first_s=2.0)
    assert [plan.active(t) for t in (1.9, 2.1, 2.3, 3.1, 4.05, 4.25)] == [
        None, (0, "drop"), None, (1, "stall"), (2, "drop"), None]
    assert FaultPlan().active(100.0) is None


class StallingClock:
    """Monotonic time [ns]: each read advances it 1 us (so that the tick loop's spin ends), each sleep by its length."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        self.now_ns += 1000
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)


def test_a_stalled_tick_is_reported_once_at_the_end_of_its_second_with_the_totals(tmp_path):
    clock = StallingClock()
    mcu = EmulatedLegMcu(tmp_path / "leg.pty", FaultPlan())
    tick = mcu.tick

    def tick_stalling_once(now_ns: int) -> None:
        tick(now_ns)
        if mcu.ticks == 700:  # 1.4 s in, the tick takes 50 ms: the next 24 deadlines are skipped
            clock.now_ns += 50_000_000

    mcu.tick = tick_stalling_once
    lines = []
    try:
        mcu.run(lambda: mcu.ticks >= 2000, lines.append, clock, clock.sleep)
    finally:
        mcu.close()
    assert lines == ["missed 24 of 500 ticks in the last 1.0 s (4.8 %); 24 of 1000 since start (2.40 %)"]
    assert (mcu.missed_ticks, mcu.deadlines) == (24, 2024)


def read_until(proc: subprocess.Popen, text: str) -> list[str]:
    """The emulator's lines up to the first containing ``text``, or all of them if it exits (stopped with SIGINT
    after ``LINE_TIMEOUT_S``)."""
    timer = threading.Timer(LINE_TIMEOUT_S, proc.send_signal, (signal.SIGINT,))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                break
    finally:
        timer.cancel()
    return lines


def test_start_up_says_the_tick_loop_runs_without_real_time_priority(start_emulator):
    emulator = start_emulator("realtime_priority:=0")
    lines = read_until(emulator.proc, "tick loop")
    emulator.stop()
    assert lines[-1].startswith("mdemorl emulate: WARNING: tick loop at normal scheduling (realtime_priority 0); on "
                                "a loaded machine it will miss ticks (each second that does is reported here)")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="drops CAP_SYS_NICE with setpriv, as root")
def test_start_up_says_when_real_time_priority_is_refused_and_how_to_get_it(tmp_path):
    proc = subprocess.Popen(
        ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", sys.executable, "-m",
         "stochlite_bringup.launcher", "emulate", "robot:=leg", f"link:={tmp_path / 'leg.pty'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = read_until(proc, "tick loop")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert lines[-1].startswith("mdemorl emulate: WARNING: tick loop at normal scheduling: SCHED_FIFO 60 refused ("), (
        lines)
    assert "grant CAP_SYS_NICE or an rtprio limit" in lines[-1] and "it will miss ticks" in lines[-1]


@pytest.mark.integration
def test_missed_ticks_are_reported_while_the_emulator_runs(start_emulator):
    emulator = start_emulator()
    scheduling = read_until(emulator.proc, "tick loop")[-1]
    os.kill(emulator.proc.pid, signal.SIGSTOP)  # the whole MCU stalls, as under a load that starves it
    time.sleep(STALL_S)
    os.kill(emulator.proc.pid, signal.SIGCONT)
    report = read_until(emulator.proc, "missed")[-1]
    assert emulator.proc.poll() is None, f"no report of the stall; it said: {scheduling}{report}"
    emulator.stop()
    assert report.startswith("mdemorl emulate: WARNING: missed ") and " ticks in the last " in report
    assert "since start" in report
    assert int(report.split("missed ")[1].split(" of")[0]) > 0
