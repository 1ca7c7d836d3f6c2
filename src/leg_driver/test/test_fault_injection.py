"""Every fault of the emulated MCU, through the real driver process, pyserial and a real pty.

One run: the driver node (its own process) drives the emulator while a client answers each joint
state with a PD torque command; the emulator injects one burst of each fault kind. The emulator's
record of the TORQUE frames it actually received shows, for each burst, that the driver sent zero
torque from the 5th frame after the fault began, and non-zero torque again once the link was back.
"""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from stochlite_bringup.package_files import package_file
from stochlite_bringup.sim_bridge_node import start_joint_angles

from leg_driver.emulated_mcu import FAULT_KINDS

pytestmark = pytest.mark.integration

EVERY_S, FOR_S, FIRST_S = 1.0, 0.15, 3.0
RECOVERY_S = {"disconnect": 0.8}  # reconnect period 0.2 s + handshake; others: the next states
RECOVERY_DEFAULT_S = 0.3
ZERO_WITHIN_CYCLES = 5  # "zero torque within 5 cycles" of the fault's start
CYCLE_NS = 2_000_000  # the driver's 500 Hz period, also the emulated MCU's read tick
# Frames the driver sent before the fault may still be in the pty when it starts, and a frame sent at cycle 5
# reaches the MCU up to one read tick later: a frame must be zero once it is both the 5th frame or later and
# read more than 6 ticks after the start (a stalled MCU reads the whole burst's frames at once, at its end).
ZERO_AFTER_NS = (ZERO_WITHIN_CYCLES + 1) * CYCLE_NS


class Responder(Node):
    """The agent's part: a PD command towards the start pose for every joint state; keeps the diagnostics."""

    def __init__(self, context) -> None:
        super().__init__("fault_test_client", context=context)
        self.q0 = start_joint_angles()
        self.states = 0
        self.diagnostics: dict[str, str] = {}
        self.commands = self.create_publisher(Float64MultiArray, "/leg/effort_commands", 10)
        self.create_subscription(JointState, "/leg/joint_states", self._on_state, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.enable = self.create_client(SetBool, "/leg/enable")

    def _on_state(self, msg: JointState) -> None:
        self.states += 1
        tau = 30.0 * (self.q0 - np.asarray(msg.position)) - 1.0 * np.asarray(msg.velocity) + 0.5
        self.commands.publish(Float64MultiArray(data=tau.tolist()))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "hw_interface":
                self.diagnostics = {kv.key: kv.value for kv in status.values}


def spin_for(executor, seconds: float, until=lambda: False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
        if until():
            return True
    return False


@pytest.fixture(scope="module")
def fault_run(start_emulator, context, ros_env, tmp_path_factory):
    """Run every fault once; (record rows, last diagnostics, driver alive at the end, exit code, stderr)."""
    link = tmp_path_factory.mktemp("driver") / "leg.pty"
    driver = subprocess.Popen(
        [sys.executable, "-m", "leg_driver.hw_interface_node", "--ros-args", "--params-file",
         str(package_file("config", "hw_interface.yaml")), "-p", f"port:={link}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ros_env, start_new_session=True)
    client = Responder(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    try:
        assert client.enable.wait_for_service(timeout_sec=20.0), "the driver's /leg/enable did not appear"
        emulator = start_emulator(f"faults:={','.join(FAULT_KINDS)}", f"every_s:={EVERY_S}", f"for_s:={FOR_S}",
                                  f"first_s:={FIRST_S}", "noise:=0.01", link=link)
        future = client.enable.call_async(SetBool.Request(data=True))
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        assert future.result().success
        assert spin_for(executor, FIRST_S, lambda: client.states > 100), "no joint states from the driver"
        spin_for(executor, FIRST_S + EVERY_S * len(FAULT_KINDS) + 1.0 - FIRST_S)
        spin_for(executor, 2.5, lambda: int(client.diagnostics.get("reconnects", 0)) >= 1)
        diagnostics = dict(client.diagnostics)
        rows = emulator.stop()
        alive = driver.poll() is None
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=10)
        yield rows, diagnostics, alive, driver.returncode, stderr
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


def test_each_fault_ends_in_zero_torque_within_5_cycles_and_torque_resumes_after_it(fault_run):
    rows, _, _, _, _ = fault_run
    torques = [r for r in rows if r.event == "TORQUE"]
    assert set(bursts(rows)) == set(FAULT_KINDS), f"bursts recorded: {sorted(bursts(rows))}"
    for kind, (start, end) in bursts(rows).items():
        before = [r for r in torques if start.t_ns - 100_000_000 <= r.t_ns <= start.t_ns]
        assert any(r.torque != (0.0, 0.0) for r in before), f"{kind}: no torque applied before the burst"
        during = sorted((r for r in torques if r.seq > start.seq and r.t_ns <= end.t_ns), key=lambda r: r.seq)
        late = [(round((r.t_ns - start.t_ns) / 1e6, 2), r.torque) for r in during[ZERO_WITHIN_CYCLES - 1:]
                if r.t_ns > start.t_ns + ZERO_AFTER_NS]
        assert all(t == (0.0, 0.0) for _, t in late), (
            f"{kind}: non-zero torque more than {ZERO_WITHIN_CYCLES} cycles into it, (ms, torque): {late}")
        if kind == "disconnect":
            hello = next(r for r in rows if r.event == "HELLO" and r.t_ns > end.t_ns)
            first = next(r for r in torques if r.t_ns >= hello.t_ns)
            assert first.torque == (0.0, 0.0), "the first command after reconnecting was not zero"
        else:  # the MCU kept reading: the driver kept sending (zero) frames through the burst
            assert len(during) >= ZERO_WITHIN_CYCLES + 10, (
                f"{kind}: only {len(during)} frames during the burst {start} .. {end}; rows then: "
                f"{[r for r in rows if start.t_ns - 10_000_000 <= r.t_ns <= end.t_ns][:20]}")
        recovery_ns = int(RECOVERY_S.get(kind, RECOVERY_DEFAULT_S) * 1e9)
        assert any(r.torque != (0.0, 0.0) for r in torques if end.t_ns < r.t_ns <= end.t_ns + recovery_ns), (
            f"{kind}: no torque within {recovery_ns / 1e9} s after the link came back")


def test_the_driver_stays_up_counts_the_faults_and_exits_cleanly(fault_run):
    _, diagnostics, alive, code, stderr = fault_run
    assert alive and code == 0 and "Traceback" not in stderr, stderr[-2000:]
    assert int(diagnostics["crc_errors"]) >= 10 and int(diagnostics["resyncs"]) >= 10
    assert int(diagnostics["reconnects"]) >= 1 and int(diagnostics["link_losses"]) >= 1
    assert int(diagnostics["link_faults"]) >= len(FAULT_KINDS)
    assert diagnostics["link"] == "connected" and diagnostics["armed"] == "True"
