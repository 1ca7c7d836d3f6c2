"""`mdemorl emulate`: its arguments, errors and fault schedule."""
import subprocess
import sys

import pytest

from leg_driver.emulated_mcu import FaultPlan


@pytest.mark.parametrize("words, message", [
    (["robot:=dog"], "robot:=dog has no emulated MCU; use robot:=leg or robot:=stochlite"),
    (["faults:=fire"], "faults:=fire: unknown ['fire']; choose from garbage,bad_crc,drop,stall,delay,disconnect"),
    (["faults:=drop", "for_s:=3", "every_s:=2"], "for_s:=3.0 must be > 0 and < every_s:=2.0"),
    (["noise:=often"], "noise:=often must be a number"),
    (["colour:=red"], "argument 'colour:=red' is not name:=value with a name of: robot, link"),
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
