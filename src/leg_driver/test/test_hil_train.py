"""Hardware-in-the-loop as a user runs it: `mdemorl emulate robot:=leg`, then `mdemorl train sim:=none port:=...`."""
import csv
import subprocess
import sys


def test_train_through_the_serial_driver_and_the_emulated_mcu(start_emulator, ros_env, tmp_path):
    emulator = start_emulator()
    assert f"port:={emulator.link}" in emulator.proc.stdout.readline()  # the banner tells the user what to run
    run_dir = tmp_path / "hil"
    proc = subprocess.run(
        [sys.executable, "-m", "stochlite_bringup.launcher", "train", "robot:=leg", "sim:=none",
         f"port:={emulator.link}", "epochs:=1", "steps_per_epoch:=200", f"run_dir:={run_dir}"],
        capture_output=True, text=True, env=ros_env, timeout=240)
    rows = emulator.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mdemorl: learner finished: the run is complete" in proc.stdout
    assert "[hw_interface]" in proc.stdout and "[sim_bridge]" not in proc.stdout
    with open(run_dir / "progress.csv") as stream:
        progress = list(csv.DictReader(stream))
    assert len(progress) == 1 and int(progress[0]["env_steps"]) == 200
    torques = [r.torque for r in rows if r.event == "TORQUE"]
    assert sum(t != (0.0, 0.0) for t in torques) > 1000  # 200 training + 1000 evaluation steps, plus resets
    assert [r.detail for r in rows if r.event == "ENABLE"][-1] == "0"  # disarmed at the end
