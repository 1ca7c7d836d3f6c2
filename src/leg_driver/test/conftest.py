"""Real parts for the driver tests: the emulated MCU (`mdemorl emulate`) on a real pty, and rclpy; and the ROS-free
loops against an emulated MCU in this process on one stepped clock (``leg_rig``, ``stochlite_rig``)."""
import array
import csv
import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.tasks.stochlite_simulation import JOINT_LOWER_RAD, JOINT_UPPER_RAD

from leg_driver.control_loop import ControlLoop, LoopSettings, SafetyLimits
from leg_driver.driver_node import LINK_SETTINGS
from leg_driver.emulated_mcu import FaultPlan
from leg_driver.emulator import EmulatedLegMcu
from leg_driver.loop_timing import NS_PER_S
from leg_driver.position_loop import PositionLimits, PositionLoop, PositionSettings
from leg_driver.protocol_frames import Robot
from leg_driver.serial_link import SerialLink
from leg_driver.stochlite_emulator import EmulatedStochliteMcu

LEG = config_defaults("hw_interface.yaml", "hw_interface")
STOCHLITE = config_defaults("stochlite_hw_interface.yaml", "stochlite_hw_interface")
COMMAND_DELAY_NS = 1_000_000  # a rig's command arrives this long after the cycle before it
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
                   f"record:={record}", *words]
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


def link_settings(config: dict) -> dict:
    """The loop settings a driver node takes from its parameters, as the shipped config file sets them."""
    return {name: config[name] for name in LINK_SETTINGS}


class SteppedClock:
    """Monotonic time [ns] that moves only when the loop sleeps or the test advances it; starts at 0, where an emulated
    MCU ticked by the test also starts its fault schedule."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS_PER_S)

    def advance(self, ns: int) -> None:
        self.now_ns += ns


class Rig:
    """A loop and an emulated MCU on one pty and one stepped clock."""

    command_delay_ns = COMMAND_DELAY_NS

    def __init__(self, make_loop, mcu) -> None:
        self.clock = SteppedClock()
        self.mcu = mcu
        self.samples = []
        self.loop = make_loop(self.clock, self.samples.append)
        self.sent: dict[int, int] = {}  # loop cycle -> sequence number of the last frame it sent
        self._read_bytes = 0  # of the MCU's, by the loop

    def cycle(self, command=None, mcu_ticks: bool = True) -> int:
        """One loop cycle, then (unless the MCU stalls) one MCU tick; then ``command``, if any, arrives. The cycle."""
        seq = self.loop.link.sent_seq
        self.loop.step()
        self._read_bytes = self.mcu.port.written_bytes  # the loop read all that waited (see tick)
        if self.loop.link.sent_seq != seq:
            self.sent[self.loop.clock.cycle] = self.loop.link.sent_seq
        if mcu_ticks:
            self.tick()
        if command is not None:
            self.clock.advance(COMMAND_DELAY_NS)
            self.loop.offer(command, self.clock())
        return self.loop.clock.cycle

    def tick(self) -> None:
        """One MCU tick at the clock's instant, once the MCU's end of the pty counts every byte the loop sent; returns
        once the loop's end counts every byte the MCU sent. The kernel passes pty input on from a worker thread and
        both ends read only what is there, so without these waits a frame could reach its reader a cycle late."""
        port = self.mcu.port
        wait_for_pty(port.master, self.loop.link.written_bytes - port.read_bytes)
        self.mcu.tick(self.clock())
        wait_for_pty(port.slave, port.written_bytes - self._read_bytes)

    def start_armed(self) -> None:
        """Handshake and ``recovery_cycles`` healthy cycles, arm, and wait until the MCU reports armed."""
        for _ in range(5 + self.loop.settings.recovery_cycles):
            self.cycle()
        assert self.loop.link.connected and not self.loop.fault, self.loop.fault
        self.loop.set_armed(True)
        for _ in range(5):
            self.cycle()
        assert self.loop.mcu_armed

    def received(self, cycle: int) -> tuple[float, ...]:
        """The values of the command frame the MCU received from ``cycle``."""
        for line in self.mcu.recorder.lines:
            _, event, seq, *values, _ = line.split(",")
            if int(seq) == self.sent[cycle]:
                assert event in ("TORQUE", "POSITION"), line
                return tuple(map(float, values))
        raise AssertionError(f"the MCU did not receive cycle {cycle}'s frame (seq {self.sent[cycle]})")

    def close(self) -> None:
        self.loop.stop()
        self.mcu.close()


def wait_for_pty(fd: int, count: int) -> None:
    """Return once the pty end ``fd`` has ``count`` bytes waiting to be read."""
    deadline = time.monotonic() + 5.0
    waiting = array.array("i", [0])
    while True:
        fcntl.ioctl(fd, termios.FIONREAD, waiting)
        if waiting[0] >= count:
            return
        assert time.monotonic() < deadline, f"the pty did not pass {count} bytes on within 5 s"
        time.sleep(0.0001)


@pytest.fixture
def leg_rig(tmp_path, request):
    """The leg's 500 Hz torque loop (hw_interface.yaml, homing gains included) and its emulated MCU; an indirect
    parameter may override the loop's ``settings`` and ``limits`` (dicts) and set the MCU's fault ``plan``."""
    params = getattr(request, "param", {})
    homing = {f"home_{k}": (LEG[f"home_{k}_hip"], LEG[f"home_{k}_knee"]) for k in ("kp", "ki", "kd")}
    settings = LoopSettings(**{**link_settings(LEG), **homing, "home_tolerance_rad": LEG["home_tolerance_rad"],
                               "spin_us": 0, **params.get("settings", {})}, rate_hz=LEG["loop_rate_hz"])
    limits = SafetyLimits(**{"max_torque": LEG["max_torque"], "max_velocity": LEG["max_velocity"],
                             "joint_min": (LEG["hip_min"], LEG["knee_min"]),
                             "joint_max": (LEG["hip_max"], LEG["knee_max"]), **params.get("limits", {})})
    mcu = EmulatedLegMcu(tmp_path / "leg.pty", params.get("plan", FaultPlan()), LEG["loop_rate_hz"],
                         record=tmp_path / "record.csv")
    link = SerialLink(str(mcu.port.link), LEG["baud"], int(LEG["handshake_timeout_s"] * NS_PER_S),
                      int(LEG["reconnect_period_s"] * NS_PER_S))
    rig = Rig(lambda clock, on_state: ControlLoop(link, limits, settings, on_state, clock=clock, sleep=clock.sleep),
              mcu)
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture
def stochlite_rig(tmp_path, request):
    """StochLite's 100 Hz position loop (stochlite_hw_interface.yaml) and its emulated MCU; an indirect parameter may
    set the MCU's fault ``plan``."""
    p = STOCHLITE
    margin = p["joint_margin_rad"]
    limits = PositionLimits(tuple(JOINT_LOWER_RAD + margin), tuple(JOINT_UPPER_RAD - margin), p["max_step_rad"])
    settings = PositionSettings(**{**link_settings(p), "spin_us": 0}, rate_hz=p["loop_rate_hz"])
    mcu = EmulatedStochliteMcu(tmp_path / "stochlite.pty", getattr(request, "param", {}).get("plan", FaultPlan()),
                               p["loop_rate_hz"], record=tmp_path / "rec.csv")
    link = SerialLink(str(mcu.port.link), p["baud"], int(p["handshake_timeout_s"] * NS_PER_S),
                      int(p["reconnect_period_s"] * NS_PER_S), Robot.STOCHLITE)
    rig = Rig(lambda clock, on_state: PositionLoop(link, limits, settings, on_state, clock=clock, sleep=clock.sleep),
              mcu)
    try:
        yield rig
    finally:
        rig.close()
