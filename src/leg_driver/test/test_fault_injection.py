"""Every fault of the emulated MCU, through the real driver process, pyserial and a real pty.

One run: the driver node (its own process, /diagnostics every 0.25 s) drives the emulator while a client answers
each joint state with a PD torque command and arms the leg again whenever /diagnostics says it is disarmed (an
over-temperature disarms it); the emulator injects one burst of each fault kind. The emulator's record of the
command frames it actually received shows, for each burst, that the driver sent zero torque from the 5th frame
after the fault began, and non-zero torque again once the link was back; /diagnostics shows each burst, and so
does the run's health.log.
"""
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from stochlite_bringup.package_files import package_file
from stochlite_bringup.run_health import HealthProblem, read_problems
from stochlite_bringup.sim_bridge_node import start_joint_angles

from leg_driver.emulated_mcu import FAULT_KINDS

pytestmark = pytest.mark.integration

# the leg stays disarmed after an over-temperature until the client arms it again: last, so no burst follows it
KINDS = tuple(kind for kind in FAULT_KINDS if kind != "over_temperature") + ("over_temperature",)
EVERY_S, FOR_S, FIRST_S = 1.0, 0.15, 3.0
DIAGNOSTICS_PERIOD_S = 0.25
# disconnect: reconnect period 0.2 s + handshake; over_temperature: the client's next /diagnostics, then enable
RECOVERY_S = {"disconnect": 0.8, "over_temperature": 1.0}
RECOVERY_DEFAULT_S = 0.3
ZERO_WITHIN_CYCLES = 5  # "zero torque within 5 cycles" of the fault's start
CYCLE_NS = 2_000_000  # the driver's 500 Hz period, also the emulated MCU's read tick
# Frames the driver sent before the fault may still be in the pty when it starts, and a frame sent at cycle 5
# reaches the MCU up to one read tick later: a frame must be zero once it is both the 5th frame or later and
# read more than 6 ticks after the start (a stalled MCU reads the whole burst's frames at once, at its end).
ZERO_AFTER_NS = (ZERO_WITHIN_CYCLES + 1) * CYCLE_NS
NAMED = {  # the counter a /diagnostics message names for a burst of each kind
    "garbage": "skipped_bytes", "bad_crc": "crc_errors", "drop": "link_faults", "stall": "link_faults",
    "delay": "link_faults", "disconnect": "link_losses", "nan_position": "invalid_states",
    "inf_velocity": "invalid_states", "wild_position": "invalid_states", "starve": "link_faults",
    "frozen_ack": "link_faults", "unknown_frame": "dropped_frames", "reboot": "mcu_errors.NO_SESSION",
    "over_temperature": "mcu_flags.OVER_TEMPERATURE",
}


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class Responder(Node):
    """The agent's part: a PD command towards the start pose for every joint state (the last one again where a
    state is not finite, as the issue's client kept commanding); keeps every /diagnostics status and, once
    ``keep_armed``, calls enable whenever one says the leg is disarmed."""

    def __init__(self, context) -> None:
        super().__init__("fault_test_client", context=context)
        self.q0 = start_joint_angles()
        self.tau = np.zeros(2)
        self.states = 0
        self.diagnostics: list[tuple[int, DiagnosticStatus]] = []  # (monotonic ns at arrival, status)
        self.enables: list[tuple[int, SetBool.Response]] = []  # (monotonic ns when asked, answer)
        self.keep_armed = False
        self._asking = False
        self.commands = self.create_publisher(Float64MultiArray, "/leg/effort_commands", 10)
        self.create_subscription(JointState, "/leg/joint_states", self._on_state, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.enable = self.create_client(SetBool, "/leg/enable")

    def arm(self):
        """Call enable true; the future of its answer, which is also kept in ``enables``."""
        self._asking = True
        asked = time.monotonic_ns()
        future = self.enable.call_async(SetBool.Request(data=True))
        future.add_done_callback(lambda done: self._answered(asked, done.result()))
        return future

    def _answered(self, asked: int, answer: SetBool.Response) -> None:
        self._asking = False
        self.enables.append((asked, answer))

    def _on_state(self, msg: JointState) -> None:
        self.states += 1
        tau = 30.0 * (self.q0 - np.asarray(msg.position)) - 1.0 * np.asarray(msg.velocity) + 0.5
        self.tau = np.where(np.isfinite(tau), tau, self.tau)  # a state that is not finite: the last command again
        self.commands.publish(Float64MultiArray(data=self.tau.tolist()))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "hw_interface":
                self.diagnostics.append((time.monotonic_ns(), status))
                if self.keep_armed and not self._asking and values(status)["armed"] == "False":
                    self.arm()


@dataclass
class FaultRun:
    rows: list  # the emulator's record
    diagnostics: list[tuple[int, DiagnosticStatus]]
    enables: list[tuple[int, SetBool.Response]]
    alive: bool  # the driver, at the end
    code: int
    stderr: str
    health: list[HealthProblem]  # the driver's health.log

    def last_values(self) -> dict[str, str]:
        return values(self.diagnostics[-1][1])


def spin_for(executor, seconds: float, until=lambda: False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
        if until():
            return True
    return False


@pytest.fixture(scope="module")
def fault_run(start_emulator, context, ros_env, tmp_path_factory) -> FaultRun:
    """Run every fault once."""
    link = tmp_path_factory.mktemp("driver") / "leg.pty"
    driver = subprocess.Popen(
        [sys.executable, "-m", "leg_driver.hw_interface_node", "--ros-args", "--params-file",
         str(package_file("config", "hw_interface.yaml")), "-p", f"port:={link}",
         "-p", f"diagnostics_period_s:={DIAGNOSTICS_PERIOD_S}", "-p", f"run_dir:={link.parent}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ros_env, start_new_session=True)
    client = Responder(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    try:
        assert client.enable.wait_for_service(timeout_sec=20.0), "the driver's /leg/enable did not appear"
        emulator = start_emulator(f"faults:={','.join(KINDS)}", f"every_s:={EVERY_S}", f"for_s:={FOR_S}",
                                  f"first_s:={FIRST_S}", "noise:=0.01", link=link)
        last_burst_over = time.monotonic() + FIRST_S + EVERY_S * len(KINDS)
        assert spin_for(executor, FIRST_S, lambda: client.states > 100), "no joint states from the driver"
        future = client.arm()
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        assert future.result().success, future.result().message
        client.keep_armed = True
        spin_for(executor, last_burst_over + RECOVERY_S["over_temperature"] - time.monotonic())
        spin_for(executor, 2.5, lambda: int(values(client.diagnostics[-1][1]).get("reconnects", 0)) >= 1)
        rows = emulator.stop()
        alive = driver.poll() is None
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=10)
        yield FaultRun(rows, list(client.diagnostics), list(client.enables), alive, driver.returncode, stderr,
                       read_problems(link.parent))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        executor.shutdown()
        client.destroy_node()


def bursts(rows):
    """{kind: (start row, end row)} of the first burst of each kind."""
    found = {}
    for start in (r for r in rows if r.event == "fault_start"):
        end = next((r for r in rows if r.event == "fault_end" and r.t_ns >= start.t_ns), None)
        if end is not None and start.detail not in found:
            found[start.detail] = (start, end)
    return found


def fault_end_ns(rows, kind: str, start, end) -> int:
    """When the fault is over for the driver: the burst's end, or a rebooted MCU's next HELLO (the MCU drives
    again once the driver greeted and armed it, within the burst)."""
    if kind == "reboot":
        return next(r.t_ns for r in rows if r.event == "HELLO" and r.t_ns > start.t_ns)
    return end.t_ns


def command_frames(rows):
    """The TORQUE and HEARTBEAT frames the MCU received (a HEARTBEAT is recorded as zero torque)."""
    return [r for r in rows if r.event in ("TORQUE", "HEARTBEAT")]


@pytest.mark.parametrize("kind", KINDS)
def test_zero_torque_from_the_5th_frame_of_a_fault_and_torque_again_after_it(fault_run, kind):
    rows = fault_run.rows
    assert set(bursts(rows)) == set(KINDS), f"bursts recorded: {sorted(bursts(rows))}"
    start, end = bursts(rows)[kind]
    over_ns = fault_end_ns(rows, kind, start, end)
    torques = [r for r in rows if r.event == "TORQUE"]
    before = [r for r in torques if start.t_ns - 100_000_000 <= r.t_ns <= start.t_ns]
    assert any(r.torque != (0.0, 0.0) for r in before), f"{kind}: no torque applied before the burst"
    during = sorted((r for r in command_frames(rows) if r.seq > start.seq and r.t_ns <= over_ns), key=lambda r: r.seq)
    late = [(round((r.t_ns - start.t_ns) / 1e6, 2), r.torque) for r in during[ZERO_WITHIN_CYCLES - 1:]
            if r.t_ns > start.t_ns + ZERO_AFTER_NS]
    assert all(t == (0.0, 0.0) for _, t in late), (
        f"{kind}: non-zero torque more than {ZERO_WITHIN_CYCLES} cycles into it, (ms, torque): {late}")
    if kind in ("disconnect", "reboot"):  # a new session: its first command is zero
        hello = next(r for r in rows if r.event == "HELLO" and r.t_ns >= over_ns)
        first = next(r for r in torques if r.t_ns >= hello.t_ns)
        assert first.torque == (0.0, 0.0), "the first command after reconnecting was not zero"
    else:  # the MCU kept reading: the driver kept sending (zero) frames through the burst
        assert len(during) >= ZERO_WITHIN_CYCLES + 10, (
            f"{kind}: only {len(during)} frames during the burst {start} .. {end}; rows then: "
            f"{[r for r in rows if start.t_ns - 10_000_000 <= r.t_ns <= end.t_ns][:20]}")
    recovery_ns = int(RECOVERY_S.get(kind, RECOVERY_DEFAULT_S) * 1e9)
    assert any(r.torque != (0.0, 0.0) for r in torques if over_ns < r.t_ns <= over_ns + recovery_ns), (
        f"{kind}: no torque within {recovery_ns / 1e9} s after the fault was over")


def test_a_frozen_ack_zeroes_the_5th_frame_sent_after_it(fault_run):
    start, end = bursts(fault_run.rows)["frozen_ack"]  # start.seq: the acknowledgement the MCU freezes
    frames = [r for r in command_frames(fault_run.rows)
              if r.seq >= start.seq + ZERO_WITHIN_CYCLES and r.t_ns <= end.t_ns]
    assert len(frames) >= 10 and all(r.torque == (0.0, 0.0) for r in frames), [
        (r.seq - start.seq, r.torque) for r in frames[:10]]


def test_over_temperature_disarms_the_leg_until_it_is_armed_again(fault_run):
    rows = fault_run.rows
    start, end = bursts(rows)["over_temperature"]
    asked = next(t for t, answer in fault_run.enables if t > start.t_ns and answer.success)
    torques = [r for r in rows if r.event == "TORQUE" and start.t_ns + ZERO_AFTER_NS < r.t_ns <= asked]
    assert all(r.torque == (0.0, 0.0) for r in torques), "torque before the client armed the leg again"
    assert any(r.torque != (0.0, 0.0) for r in rows if r.event == "TORQUE" and r.t_ns > asked)
    said = [values(s) | {"level": s.level, "message": s.message} for t, s in fault_run.diagnostics
            if start.t_ns < t <= asked]
    assert said and said[-1]["armed"] == "False"  # the loop's own arming: it disarmed itself
    assert any(s["level"] == DiagnosticStatus.ERROR and "over-temperature" in s["message"] for s in said), said


def test_a_rebooted_mcu_is_greeted_and_armed_again(fault_run):
    rows = fault_run.rows
    start, _ = bursts(rows)["reboot"]
    hello = next(r for r in rows if r.event == "HELLO" and r.t_ns > start.t_ns)
    enable = next(r for r in rows if r.event == "ENABLE" and r.t_ns > hello.t_ns)
    assert enable.detail == "1" and any(r.torque != (0.0, 0.0) for r in rows if r.event == "TORQUE" and
                                        r.t_ns > enable.t_ns)
    assert int(fault_run.last_values()["mcu_errors.NO_SESSION"]) >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_shows_in_the_diagnostics_message_after_it(fault_run, kind):
    """The level covers the whole period: the first message after a burst is WARN or ERROR though it is over."""
    start, end = bursts(fault_run.rows)[kind]
    over_ns = fault_end_ns(fault_run.rows, kind, start, end)
    after = next(i for i, (t, _) in enumerate(fault_run.diagnostics) if t > over_ns)
    first = next(i for i, (t, _) in enumerate(fault_run.diagnostics) if t > start.t_ns)
    status = fault_run.diagnostics[after][1]
    assert status.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR), f"{kind}: {status.message}"
    messages = [s.message for _, s in fault_run.diagnostics[first:after + 1]]
    assert any(NAMED[kind] in m for m in messages), (kind, messages)
    if kind == "over_temperature":
        assert any(s.level == DiagnosticStatus.ERROR for _, s in fault_run.diagnostics[first:after + 1])


def test_the_driver_stays_up_counts_the_faults_and_exits_cleanly(fault_run):
    assert fault_run.alive and fault_run.code == 0 and "Traceback" not in fault_run.stderr, fault_run.stderr[-2000:]
    diagnostics = fault_run.last_values()
    assert int(diagnostics["crc_errors"]) >= 10 and int(diagnostics["resyncs"]) >= 10
    assert int(diagnostics["reconnects"]) >= 1 and int(diagnostics["link_losses"]) >= 1
    assert int(diagnostics["link_faults"]) >= len(KINDS) - 1  # all but over_temperature are link faults
    # each burst's frames are counted (exact counts: test_loop_bad_states.py, where no tick can be late; here a
    # loaded machine may hold the emulator's tick back for part of a 0.15 s burst)
    assert int(diagnostics["invalid_states"]) >= 3 and int(diagnostics["dropped_frames"]) >= 1
    assert int(diagnostics["mcu_flags.OVER_TEMPERATURE"]) == 1
    assert diagnostics["link"] == "connected" and diagnostics["armed"] == "True"


def test_the_health_log_records_each_fault_the_diagnostics_named(fault_run):
    """Each period's faults are lines of health.log, so the launcher's summary can name them after the run."""
    assert {p.node for p in fault_run.health} == {"hw_interface"}
    assert {"fault", "link_faults", "crc_errors", "dropped_frames", "mcu_flags.OVER_TEMPERATURE"} <= {
        p.kind for p in fault_run.health}
    link_faults = sum(p.count for p in fault_run.health if p.kind == "link_faults")
    assert link_faults >= int(fault_run.last_values()["link_faults"])  # the last message may not have arrived
