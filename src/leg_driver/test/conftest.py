"""Real processes for the driver tests: the emulated MCU (`mdemorl emulate`) on a real pty, and rclpy."""
import csv
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context

DOMAIN_ID = 60 + os.getpid() % 10
ENV = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")


@dataclass
class Row:
    t_ns: int
    event: str
    seq: int
    torque: tuple[float, float]
    detail: str


@dataclass
class Emulator:
    proc: subprocess.Popen
    link: Path
    record: Path
    banner: str

    def stop_records(self) -> list[dict[str, str]]:
        """SIGINT, wait, and return every recorded row as the CSV's columns (any robot)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=10)
        assert self.proc.returncode == 0, f"emulator exit {self.proc.returncode}:\n{out}\n{err}"
        with self.record.open() as stream:
            return list(csv.DictReader(stream))

    def stop(self) -> list[Row]:
        """SIGINT, wait, and return every recorded row of the leg's MCU (received command frames and fault bursts)."""
        return [Row(int(r["t_ns"]), r["event"], int(r["seq"]), (float(r["tau_hip"]), float(r["tau_knee"])),
                    r["detail"]) for r in self.stop_records()]


@pytest.fixture(scope="module")
def ros_env():
    """Environment of the processes a test starts: this test run's ROS domain, localhost only."""
    return ENV


@pytest.fixture(scope="module")
def start_emulator(tmp_path_factory):
    """``start_emulator(*name_value_words, link=None) -> Emulator``; killed at the end of the module if running."""
    started = []
    tmp_path = tmp_path_factory.mktemp("emulator")

    def start(*words: str, link: Path | None = None) -> Emulator:
        link = link or tmp_path / f"leg{len(started)}.pty"
        record = tmp_path / f"record{len(started)}.csv"
        command = [sys.executable, "-m", "stochlite_bringup.launcher", "emulate", "robot:=leg", f"link:={link}",
                   f"record:={record}", "realtime_priority:=49", *words]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                                start_new_session=True)
        banner = proc.stdout.readline()
        assert str(link) in banner, f"no banner: {banner!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        emulator = Emulator(proc, link, record, banner)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        if emulator.proc.poll() is None:
            os.killpg(emulator.proc.pid, signal.SIGKILL)
            emulator.proc.wait()


@pytest.fixture(scope="module")
def context():
    ros_context = Context()
    rclpy.init(context=ros_context, domain_id=DOMAIN_ID)
    try:
        yield ros_context
    finally:
        rclpy.try_shutdown(context=ros_context)
