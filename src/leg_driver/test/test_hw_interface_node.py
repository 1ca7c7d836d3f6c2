"""hw_interface_node in-process against the emulated MCU on a real pty: arming, clamps, watchdog, rejection,
reset and parameters. Each check reads the frames the emulator actually received."""
import itertools
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import EVERY_MESSAGE_QOS
from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.package_files import package_file
from stochlite_bringup.sim_bridge_node import start_joint_angles

from leg_driver.control_loop import SafetyLimits
from leg_driver.hw_interface_node import PARAMETERS, HwInterfaceNode

TIMEOUT_S = 10.0
MAX_TORQUE = 10.0  # config/hw_interface.yaml
COMMAND_TIMEOUT_NS = 20_000_000


class Client(Node):
    def __init__(self, context) -> None:
        super().__init__("driver_test_client", context=context)
        self.states: list[JointState] = []
        self.commands = self.create_publisher(Float64MultiArray, "/leg/effort_commands", 10)
        # every state: with the driver's keep-last-10 the client, sharing one executor with the driver, could
        # fall 10 states behind and lose a whole command phase's states
        self.create_subscription(JointState, "/leg/joint_states", self.states.append, EVERY_MESSAGE_QOS)
        self.enable = self.create_client(SetBool, "/leg/enable")
        self.reset = self.create_client(Trigger, "/leg/reset")

    def send(self, data) -> None:
        self.commands.publish(Float64MultiArray(data=[float(x) for x in data]))


@pytest.fixture
def rig(start_emulator, context, request):
    """(emulator, driver node, client, executor) on a fresh emulator; all torn down after the test.

    Parametrize it indirectly with a dict to override driver parameters."""
    emulator = start_emulator()
    overrides = {"port": str(emulator.link), **getattr(request, "param", {})}
    node = HwInterfaceNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = Client(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(client)
    assert spin_until(executor, lambda: len(client.states) > 20 and client.commands.get_subscription_count() > 0)
    try:
        yield emulator, node, client, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def spin_until(executor, predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.005)
    return True


def spin_for(executor, seconds: float) -> None:
    spin_until(executor, lambda: False, seconds)


def call(executor, client, request):
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=TIMEOUT_S)
    assert future.done(), f"{client.srv_name} did not answer"
    return future.result()


def stream(executor, client, data, seconds: float, until=None) -> bool:
    """Send ``data`` at about 250 Hz for ``seconds``, then on until ``until()`` holds (for at most TIMEOUT_S).

    Returns whether ``until`` held (True without one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or (until is not None and not until()):
        if time.monotonic() > deadline + TIMEOUT_S:
            return False
        client.send(data)
        executor.spin_once(timeout_sec=0.004)
    return True


def frames(rows, event, after_ns=0, before_ns=None):
    return [r for r in rows if r.event == event and r.t_ns > after_ns and (before_ns is None or r.t_ns <= before_ns)]


@pytest.mark.integration
def test_starts_disarmed_then_applies_clamped_commands_until_disarmed(rig):
    emulator, node, client, executor = rig
    stream(executor, client, [3.0, -3.0], 0.1)  # disarmed: ignored
    assert not node.loop.armed
    assert call(executor, client.enable, SetBool.Request(data=True)).message.startswith("armed")
    # one callback per spin: the client can lag the 500 Hz states, so keep commanding until such a state arrives
    def clamped_state_arrived() -> bool:  # what the MCU applied, clamped from 50
        return [MAX_TORQUE, -MAX_TORQUE] in [list(s.effort) for s in client.states]

    assert stream(executor, client, [50.0, -50.0], 0.1, until=clamped_state_arrived), "no state had that torque"
    assert call(executor, client.enable, SetBool.Request(data=False)).message.startswith("disarmed")
    assert stream(executor, client, [3.0, -3.0], 0.1, until=lambda: not node.loop.counters().get("mcu_armed", True))
    rows = emulator.stop()
    # rows are in the MCU's read order, which is the driver's send order
    enabled_at = [i for i, r in enumerate(rows) if r.event == "ENABLE"]
    disarmed_at = next(i for i in enabled_at if rows[i].detail == "0")
    assert frames(rows, "HELLO") and not frames(rows[:enabled_at[0]], "TORQUE")
    assert len(frames(rows[:enabled_at[0]], "HEARTBEAT")) >= 20  # one per cycle while disarmed
    assert rows[enabled_at[0]].detail == "1" and rows[enabled_at[-1]].detail == "0"
    armed = frames(rows[enabled_at[0]:disarmed_at], "TORQUE")
    assert armed[0].torque == (0.0, 0.0)  # nothing before the first command sent after arming
    assert (MAX_TORQUE, -MAX_TORQUE) in [r.torque for r in armed]  # clamped from 50
    assert all(abs(t) <= MAX_TORQUE for r in armed for t in r.torque)
    assert not frames(rows[disarmed_at:], "TORQUE") and frames(rows[disarmed_at:], "HEARTBEAT")  # disarmed
    assert all(list(s.name) == ["hip", "knee"] for s in client.states)


@pytest.mark.integration
def test_watchdog_zeroes_torque_when_commands_stop(rig):
    emulator, node, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    stream(executor, client, [1.0, 1.0], 0.1)
    t_last = time.monotonic_ns()
    spin_for(executor, 0.1)
    rows = emulator.stop()
    torques = frames(rows, "TORQUE", t_last - 50_000_000)
    nonzero = [r for r in torques if r.torque != (0.0, 0.0)]
    assert nonzero and max(r.t_ns for r in nonzero) <= t_last + COMMAND_TIMEOUT_NS + 15_000_000
    assert torques[-1].torque == (0.0, 0.0) and len(torques) > len(nonzero) + 20
    # the host's watchdog counts the lapse, unless a link fault (a loaded machine's late states) zeroed it first
    counters = node.loop.counters()
    assert counters["watchdog_trips"] == 1 or (counters["watchdog_trips"] == 0 and counters["link_faults"]), counters


@pytest.mark.parametrize("rig", [{"command_timeout_s": 1.0}], indirect=True)  # phases need not be punctual
@pytest.mark.integration
def test_nan_inf_and_wrong_length_commands_are_rejected_counted_and_zeroed(rig):
    emulator, node, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    assert call(executor, client.reset, Trigger.Request()).success  # inside the joint limits, so no clamping
    valid = [0.5, 0.0], [0.25, 0.0]
    for data in (valid[0], [math.nan, 1.0], valid[1], [1.0, 2.0, 3.0], valid[0], [math.inf, 0.0], []):
        count, rejected = len(client.states), node.loop.rejected

        def taken(data=data, count=count, rejected=rejected) -> bool:
            """The MCU applied a valid command; a bad one was rejected 5 times and the MCU applied zero torque."""
            efforts = [list(s.effort) for s in client.states[count:]]
            return data in efforts if data in valid else (
                node.loop.rejected >= rejected + 5 and efforts.count([0.0, 0.0]) >= 5)

        assert stream(executor, client, data, 0.12, until=taken), f"{data} was not taken"
    rows = emulator.stop()
    assert node.loop.rejected >= 4 * 5
    # from the first valid command on, in the MCU's read order: each valid command, then zero torque while the bad
    # one after it is the latest (a link fault of this busy process may add zeros anywhere)
    torques = [r.torque for r in frames(rows, "TORQUE")]
    torques = torques[torques.index(tuple(valid[0])):]
    assert set(torques) <= {tuple(valid[0]), tuple(valid[1]), (0.0, 0.0)}, set(torques)
    changes, zeros = [], 0  # (valid command, zero frames just before it) where the applied command changed
    for torque, run in itertools.groupby(torques):
        if torque == (0.0, 0.0):
            zeros = len(list(run))
        else:
            if not changes or torque != changes[-1][0]:
                changes.append((torque, zeros))
            zeros = 0
    assert [torque for torque, _ in changes] == [tuple(valid[0]), tuple(valid[1]), tuple(valid[0])], changes
    assert all(n >= 5 for _, n in changes[1:]) and zeros >= 5, (changes, zeros)  # not the last valid one: zero


@pytest.mark.integration
def test_reset_moves_the_leg_to_the_start_of_the_path_and_needs_arming(rig):
    _, _, client, executor = rig
    refused = call(executor, client.reset, Trigger.Request())
    assert not refused.success and "arm the motors first" in refused.message
    call(executor, client.enable, SetBool.Request(data=True))
    stream(executor, client, [3.0, 3.0], 0.2)  # push it away
    response = call(executor, client.reset, Trigger.Request())
    assert response.success, response.message
    count = len(client.states)
    assert spin_until(executor, lambda: len(client.states) > count)
    np.testing.assert_allclose(client.states[-1].position, start_joint_angles(), atol=0.05)


def test_safety_limits_clamp_torque_and_stop_pushing_past_joint_and_speed_limits():
    limits = SafetyLimits(10.0, 20.0, (-1.5, -2.5), (1.5, 0.0))
    assert limits.clamp((50.0, -50.0), (0.0, -1.0), (0.0, 0.0)) == (10.0, -10.0)
    assert limits.clamp((5.0, -5.0), (1.6, -2.6), (0.0, 0.0)) == (0.0, 0.0)  # beyond: not further out
    assert limits.clamp((-5.0, 5.0), (1.6, -2.6), (0.0, 0.0)) == (-5.0, 5.0)  # back in: allowed
    assert limits.clamp((5.0, 5.0), (0.0, -1.0), (21.0, -21.0)) == (0.0, 5.0)  # too fast: no speeding up


@pytest.mark.integration
def test_parameters_are_typed_described_read_only_and_a_missing_port_is_named(context, ros_env):
    defaults = config_defaults("hw_interface.yaml", "hw_interface")
    assert set(defaults) == set(PARAMETERS) and defaults["loop_rate_hz"] == 500 and defaults["port"] == ""
    for name, param in PARAMETERS.items():
        assert param.description and param.descriptor().read_only
    with pytest.raises(ValueError, match="parameter 'port' is empty: set the MCU's serial device"):
        HwInterfaceNode(context=context)
    proc = subprocess.run([sys.executable, "-m", "leg_driver.hw_interface_node", "--ros-args", "--params-file",
                           str(package_file("config", "hw_interface.yaml"))],
                          capture_output=True, text=True, env=ros_env, timeout=60)
    assert proc.returncode == 1 and "parameter 'port' is empty" in proc.stderr and "Traceback" not in proc.stderr
