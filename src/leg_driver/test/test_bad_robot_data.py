"""Bad data from the robot through hw_interface_node in-process, its loop process, pyserial and a real pty.

One scripted run against the emulated leg MCU with three long bursts (NaN positions, random bytes,
over-temperature) while a client answers each joint state with a PD torque command: a reset during the NaN
states, and enable calls during and after the others. The emulator's record of the command frames it received,
the service answers and every /diagnostics message are then checked. A driver for the leg on a StochLite MCU
is checked on its own.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.sim_bridge_node import start_joint_angles

from leg_driver.hw_interface_node import HwInterfaceNode

pytestmark = pytest.mark.integration

KINDS = ("nan_position", "garbage", "over_temperature")
FIRST_S, EVERY_S, FOR_S = 2.5, 2.5, 1.2
INTO_BURST_S = 0.15  # the client acts this long after a burst's start, and this long plus recovery after its end
AFTER_BURST_S = 0.3
DRIVER = {"diagnostics_period_s": 0.25, "home_timeout_s": 0.6, "enable_timeout_s": 0.3}
ZERO_AFTER_NS = 12_000_000  # frames read by the MCU 6 cycles into a fault, and from the 5th on, are zero
TIMEOUT_S = 10.0


class Client(Node):
    """A PD torque command towards the start pose for each joint state (the last one again where a state is not
    finite); keeps every /diagnostics status."""

    def __init__(self, context) -> None:
        super().__init__("bad_data_test_client", context=context)
        self.q0 = start_joint_angles()
        self.tau = np.zeros(2)
        self.states = 0
        self.diagnostics: list[tuple[int, DiagnosticStatus]] = []  # (monotonic ns at arrival, status)
        self.commands = self.create_publisher(Float64MultiArray, "/leg/effort_commands", 10)
        self.create_subscription(JointState, "/leg/joint_states", self._on_state, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.enable = self.create_client(SetBool, "/leg/enable")
        self.reset = self.create_client(Trigger, "/leg/reset")

    def _on_state(self, msg: JointState) -> None:
        self.states += 1
        tau = 30.0 * (self.q0 - np.asarray(msg.position)) - 1.0 * np.asarray(msg.velocity) + 0.5
        self.tau = np.where(np.isfinite(tau), tau, self.tau)  # a state that is not finite: the last command again
        self.commands.publish(Float64MultiArray(data=self.tau.tolist()))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics += [(time.monotonic_ns(), s) for s in msg.status if s.name == "hw_interface"]


@dataclass
class Run:
    rows: list = field(default_factory=list)  # the emulator's record
    answers: dict[str, tuple[int, object]] = field(default_factory=dict)  # step: (monotonic ns when asked, answer)
    diagnostics: list[tuple[int, DiagnosticStatus]] = field(default_factory=list)

    def burst(self, kind: str) -> tuple[int, int]:
        """(start, end) [monotonic ns] of the burst of ``kind``."""
        start = next(r for r in self.rows if r.event == "fault_start" and r.detail == kind)
        return start.t_ns, next(r.t_ns for r in self.rows if r.event == "fault_end" and r.t_ns > start.t_ns)

    def frames(self, after_ns: int, before_ns: int) -> list:
        """TORQUE and HEARTBEAT frames the MCU read in the window (a HEARTBEAT is recorded as zero torque)."""
        return [r for r in self.rows if r.event in ("TORQUE", "HEARTBEAT") and after_ns < r.t_ns <= before_ns]

    def statuses(self, after_ns: int, before_ns: int) -> list[DiagnosticStatus]:
        return [s for t, s in self.diagnostics if after_ns < t <= before_ns]


def spin_until(executor, predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.005)
    return True


def call(executor, client, request):
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=TIMEOUT_S)
    assert future.done(), f"{client.srv_name} did not answer"
    return future.result()


@pytest.fixture(scope="module")
def run(start_emulator, context) -> Run:
    emulator = start_emulator(f"faults:={','.join(KINDS)}", f"first_s:={FIRST_S}", f"every_s:={EVERY_S}",
                              f"for_s:={FOR_S}")
    t0 = time.monotonic()
    overrides = {"port": str(emulator.link), **DRIVER}
    node = HwInterfaceNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = Client(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(client)
    result = Run()

    def ask(step: str, service, request) -> None:
        """Call ``service``; keep the answer as ``step``."""
        result.answers[step] = (time.monotonic_ns(), call(executor, service, request))

    def at(seconds: float, step: str, service, request) -> None:
        """:func:`ask` ``seconds`` after the emulator started."""
        spin_until(executor, lambda: time.monotonic() >= t0 + seconds, seconds + 1.0)
        ask(step, service, request)

    def burst_at(k: int) -> float:
        return FIRST_S + k * EVERY_S

    try:
        assert spin_until(executor, lambda: client.states > 20), "no joint states from the driver"
        ask("arm", client.enable, SetBool.Request(data=True))
        at(burst_at(0) + INTO_BURST_S, "reset in nan", client.reset, Trigger.Request())
        at(burst_at(1) + INTO_BURST_S, "enable in garbage", client.enable, SetBool.Request(data=True))
        at(burst_at(1) + FOR_S + AFTER_BURST_S, "enable after garbage", client.enable, SetBool.Request(data=True))
        at(burst_at(2) + INTO_BURST_S, "enable in over_temperature", client.enable, SetBool.Request(data=True))
        at(burst_at(2) + FOR_S + AFTER_BURST_S, "enable after over_temperature", client.enable,
           SetBool.Request(data=True))
        spin_until(executor, lambda: False, 0.6)  # torque again, and two more /diagnostics
        result.rows = emulator.stop()
        result.diagnostics = list(client.diagnostics)
        yield result
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def test_a_reset_during_nan_states_sends_no_nan_and_no_torque_and_names_the_fault(run):
    start, end = run.burst("nan_position")
    asked, answer = run.answers["reset in nan"]
    assert start < asked < end
    assert not answer.success and "last fault: invalid state from the MCU: position[0] = nan" in answer.message, (
        answer.message)
    assert all(math.isfinite(t) for r in run.rows if r.event == "TORQUE" for t in r.torque)
    frames = sorted(run.frames(start, end), key=lambda r: r.seq)[4:]
    assert len(frames) > 400 and all(r.torque == (0.0, 0.0) for r in frames if r.t_ns > start + ZERO_AFTER_NS)
    said = run.statuses(start, end + 300_000_000)
    assert any("invalid_states +" in s.message for s in said)
    invalid = [int({kv.key: kv.value for kv in s.values}["invalid_states"]) for s in said]
    assert max(invalid) >= 400  # 1.2 s at 500 Hz: 600 NaN states


def test_enable_answers_no_while_the_link_is_faulty_and_yes_once_it_is_healthy(run):
    start, end = run.burst("garbage")
    refused_at, refused = run.answers["enable in garbage"]
    armed_at, armed = run.answers["enable after garbage"]
    assert start < refused_at < end < armed_at
    assert not refused.success and "cannot arm: link fault: no state from the MCU" in refused.message
    assert refused.message.endswith("then enable again); disarmed"), refused.message
    assert armed.success, armed.message
    assert all(r.torque == (0.0, 0.0) for r in run.frames(refused_at + 400_000_000, armed_at))  # disarmed
    assert any(r.torque != (0.0, 0.0) for r in run.frames(armed_at, armed_at + 300_000_000))


def test_random_bytes_read_error_in_every_diagnostics_message_and_warn_in_the_one_after(run):
    start, end = run.burst("garbage")
    during = run.statuses(start + 50_000_000, end)
    assert len(during) >= 3 and all(s.level == DiagnosticStatus.ERROR for s in during), [
        (s.level, s.message) for s in during]
    assert all("link fault: no state from the MCU" in s.message and "skipped_bytes +" in s.message for s in during)
    after = run.statuses(end, end + 1_000_000_000)[0]
    assert after.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR), after.message


def test_over_temperature_disarms_the_leg_and_enable_says_no_until_it_clears(run):
    start, end = run.burst("over_temperature")
    refused_at, refused = run.answers["enable in over_temperature"]
    armed_at, armed = run.answers["enable after over_temperature"]
    assert start < refused_at < end < armed_at
    assert not refused.success and "the MCU reports over-temperature" in refused.message, refused.message
    assert armed.success, armed.message
    assert all(r.torque == (0.0, 0.0) for r in run.frames(start + ZERO_AFTER_NS, armed_at))
    assert any(r.torque != (0.0, 0.0) for r in run.frames(armed_at, armed_at + 300_000_000))
    said = run.statuses(start + 50_000_000, end)
    assert said and all(s.level == DiagnosticStatus.ERROR and "over-temperature" in s.message for s in said)
    assert all({kv.key: kv.value for kv in s.values}["armed"] == "False" for s in said)


def test_a_driver_for_the_leg_on_a_stochlite_mcu_never_arms_and_counts_the_mismatch(start_emulator, context):
    """Also: enable false answers at once while an enable true waits."""
    emulator = start_emulator("robot:=stochlite")
    overrides = {"port": str(emulator.link), **DRIVER, "enable_timeout_s": 2.0}
    node = HwInterfaceNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = Client(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(client)
    try:
        assert client.enable.wait_for_service(timeout_sec=TIMEOUT_S)
        waiting = client.enable.call_async(SetBool.Request(data=True))
        spin_until(executor, lambda: False, 0.1)
        asked = time.monotonic()
        disarmed = call(executor, client.enable, SetBool.Request(data=False))
        disarm_s = time.monotonic() - asked
        executor.spin_until_future_complete(waiting, timeout_sec=TIMEOUT_S)
        answer = waiting.result()
        assert spin_until(executor, lambda: len(client.diagnostics) >= 2)
        rows = emulator.stop_records()
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
    assert disarmed.success and disarm_s < 0.5  # at once, while enable true waits (up to 2 s)
    assert not answer.success
    assert "the MCU on" in answer.message and "drives a stochlite, this driver the leg" in answer.message
    assert "set robot:= to match the hardware or use the right port" in answer.message
    status = client.diagnostics[-1][1]
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["mcu_errors.ROBOT_MISMATCH"]) >= 1 and values["link"] == "handshaking"
    assert status.level == DiagnosticStatus.ERROR and "drives a stochlite" in status.message
    assert not rows  # the MCU never accepted a HELLO, an ENABLE or a command
