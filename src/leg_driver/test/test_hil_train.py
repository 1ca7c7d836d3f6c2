"""Hardware-in-the-loop as a user runs it: `mdemorl emulate robot:=leg`, then `mdemorl train sim:=none port:=...`."""
import csv
import os
import subprocess
import sys

import pytest
from leg_driver.onboard_agent import EPISODES_FILE
from stochlite_bringup.node_table import HEALTH_FILE, STALLS_FILE

pytestmark = pytest.mark.integration


def test_train_through_the_serial_driver_and_the_emulated_mcu(start_emulator, ros_env, tmp_path):
    """Two epochs of 1000 real steps, the policy acting in the driver's loop process: the learner keeps Algorithm 1's
    update ratio (episode pacing holds the homed robot between episodes) and no watchdog trips inside an episode."""
    emulator = start_emulator()
    assert f"port:={emulator.link}" in emulator.proc.stdout.readline()  # the banner tells the user what to run
    run_dir = tmp_path / "hil"
    proc = subprocess.run(
        [sys.executable, "-m", "stochlite_bringup.launcher", "train", "robot:=leg", "sim:=none",
         f"port:={emulator.link}", "epochs:=2", "steps_per_epoch:=1000", f"run_dir:={run_dir}"],
        capture_output=True, text=True, env=ros_env, timeout=600)
    rows = emulator.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mdemorl: learner finished: the run is complete" in proc.stdout
    assert "[hw_interface]" in proc.stdout and "[sim_bridge]" not in proc.stdout and "[agent]" not in proc.stdout
    summary = next(line for line in proc.stdout.splitlines() if line.startswith("mdemorl: 2 epochs, 2000 env steps"))
    if (run_dir / HEALTH_FILE).is_file() or (run_dir / STALLS_FILE).is_file():  # the driver's faults, if any
        assert "WARNING: the run was not healthy: " in summary, summary
    else:
        assert summary.endswith("No fault, stall or update-ratio shortfall was recorded."), summary
    with open(run_dir / "progress.csv") as stream:
        progress = list(csv.DictReader(stream))
    assert [int(row["env_steps"]) for row in progress] == [1000, 2000]
    # learner.yaml: 1 update per real step after start_steps 1000
    assert 0.8 <= int(progress[-1]["sac_updates"]) / (2000 - 1000) <= 1.2, progress[-1]
    with open(run_dir / EPISODES_FILE) as stream:
        episodes = list(csv.DictReader(stream))
    assert [(row["evaluation"], int(row["commands"])) for row in episodes] == [("False", 1000), ("True", 1000)] * 2
    assert all(int(row["watchdog_trips"]) == 0 for row in episodes), episodes
    # the second training episode waited for the learner (lag 1000 - 0 > 250): pacing, not streaming
    assert int(episodes[3]["policy_version"]) >= 1000 - 250, episodes[3]
    torques = [r.torque for r in rows if r.event == "TORQUE"]
    assert sum(t != (0.0, 0.0) for t in torques) > 4000  # 2 x (1000 training + 1000 evaluation) steps, plus homing
    assert [r.detail for r in rows if r.event == "ENABLE"][-1] == "0"  # disarmed at the end


def test_train_on_the_other_robots_mcu_stops_with_the_drivers_reason(start_emulator, ros_env, tmp_path):
    emulator = start_emulator("robot:=stochlite")  # the leg's driver refuses it: it cannot arm, and stops
    proc = subprocess.run(
        [sys.executable, "-m", "stochlite_bringup.launcher", "train", "robot:=leg", "sim:=none",
         f"port:={emulator.link}", "epochs:=1", "steps_per_epoch:=200", f"run_dir:={tmp_path / 'mismatch'}"],
        capture_output=True, text=True, env=ros_env, timeout=240)
    rows = emulator.stop_records()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "node 'hw_interface' died with exit code 1" in out, out[-3000:]
    assert "cannot arm (attempt 1 of 3): link fault" in out
    assert "the robot refused to arm 3 times, last: link fault" in out
    assert "drives a stochlite, this driver the leg" in out
    assert not rows  # the MCU never accepted a HELLO, an ENABLE or a command


def test_train_stochlite_through_its_profile_the_estimator_and_the_emulated_mcu(start_emulator, tmp_path):
    emulator = start_emulator("robot:=stochlite")
    assert "train robot:=stochlite sim:=none" in emulator.proc.stdout.readline()
    env = {**ros_env_for_stochlite(), "PYTHONUNBUFFERED": "1"}
    run_dir = tmp_path / "hil_stochlite"
    proc = subprocess.run(
        [sys.executable, "-m", "stochlite_bringup.launcher", "train", "robot:=stochlite", "sim:=none",
         f"port:={emulator.link}", "epochs:=1", "steps_per_epoch:=200", f"run_dir:={run_dir}"],
        capture_output=True, text=True, env=env, timeout=300)
    rows = emulator.stop_records()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mdemorl: learner finished: the run is complete" in proc.stdout
    assert "[stochlite_hw_interface]" in proc.stdout and "[stochlite_estimator]" in proc.stdout
    assert "[agent]" not in proc.stdout  # the driver runs the policy on its loop's thread
    with open(run_dir / EPISODES_FILE) as stream:
        episodes = list(csv.DictReader(stream))
    assert [row["evaluation"] for row in episodes][-1] == "True" and sum(int(r["commands"]) for r in episodes) >= 200
    assert all(int(row["watchdog_trips"]) == 0 for row in episodes), episodes
    with open(run_dir / "progress.csv") as stream:
        progress = list(csv.DictReader(stream))
    assert len(progress) == 1 and int(progress[0]["env_steps"]) == 200
    assert sum(r["event"] == "POSITION" for r in rows) > 200  # the agent's servo targets reached the MCU
    assert [r["detail"] for r in rows if r["event"] == "ENABLE"][-1] == "0"  # disarmed at the end


def ros_env_for_stochlite() -> dict[str, str]:
    """This test's ROS domain: the stochlite range 50-59, localhost only."""
    return dict(os.environ, ROS_DOMAIN_ID=str(50 + os.getpid() % 10), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
