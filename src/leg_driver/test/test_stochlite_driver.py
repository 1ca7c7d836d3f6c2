"""StochLite's profile end to end on the robot side: hw_interface_node (stochlite) in-process against the emulated MCU
(`mdemorl emulate robot:=stochlite`, PyBullet) on a real pty, over real DDS; each check reads the POSITION frames the
emulator actually received."""
import math
import os
import subprocess
import sys
import time

import numpy as np
import pybullet
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from mdemorl_msgs.msg import TaskStep
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.tasks.stochlite_gait import foot_targets, gait_command, joint_targets, standing_joint_targets
from stochlite_bringup.tasks.stochlite_env import MIN_HEIGHT_M
from stochlite_bringup.tasks.stochlite_simulation import JOINT_NAMES, JOINT_UPPER_RAD

from leg_driver.emulated_mcu import FaultPlan
from leg_driver.position_loop import base_tilt_rad
from leg_driver.protocol_frames import Robot
from leg_driver.serial_link import SerialLink
from leg_driver.stochlite_emulator import EmulatedStochliteMcu, RealtimeStochliteSimulation
from leg_driver.stochlite_estimator_node import StochliteEstimatorNode
from leg_driver.stochlite_hw_node import StochliteHwInterfaceNode

TIMEOUT_S = 10.0
MAX_STEP = 0.1  # config/stochlite_hw_interface.yaml
MARGIN = 0.02
DOMAIN_ID = 50 + os.getpid() % 10


@pytest.fixture(scope="module")
def context():
    ros_context = Context()
    rclpy.init(context=ros_context, domain_id=DOMAIN_ID)
    try:
        yield ros_context
    finally:
        rclpy.try_shutdown(context=ros_context)


class Client(Node):
    def __init__(self, context) -> None:
        super().__init__("stochlite_test_client", context=context)
        self.states: list[JointState] = []
        self.imu: list[Imu] = []
        self.tasks: list[TaskStep] = []
        self.rpy: list[Vector3Stamped] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.commands = self.create_publisher(Float64MultiArray, "/stochlite/joint_commands", 10)
        self.create_subscription(JointState, "/stochlite/joint_states", self.states.append, 10)
        self.create_subscription(Imu, "/stochlite/imu", self.imu.append, 10)
        self.create_subscription(TaskStep, "/stochlite/task_step", self.tasks.append, 10)
        self.create_subscription(Vector3Stamped, "/stochlite/torso_rpy", self.rpy.append, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.enable = self.create_client(SetBool, "/stochlite/enable")
        self.reset = self.create_client(Trigger, "/stochlite/reset")

    def send(self, data) -> None:
        self.commands.publish(Float64MultiArray(data=[float(x) for x in data]))

    def last_diagnostics(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} | {
            "message": self.diagnostics[-1].status[0].message}


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


def stream(executor, client, data, seconds: float) -> None:
    """Send ``data`` (or ``data(t)``) at about 100 Hz for ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        client.send(data(time.monotonic() - start) if callable(data) else data)
        spin_until(executor, lambda: False, 0.01)


def positions(rows, after_ns=0, before_ns=None):
    """(t_ns, 12 targets) of the POSITION frames the MCU received in the window."""
    return [(int(r["t_ns"]), np.array([float(r[n]) for n in JOINT_NAMES])) for r in rows
            if r["event"] == "POSITION" and int(r["t_ns"]) > after_ns and (before_ns is None or int(r["t_ns"]) <= before_ns)]


@pytest.fixture
def rig(start_emulator, context, request):
    """(emulator, driver, estimator, client, executor) on a fresh emulated StochLite; torn down after the test."""
    emulator = start_emulator("robot:=stochlite", *getattr(request, "param", ()))
    driver = StochliteHwInterfaceNode(context=context, parameter_overrides=[Parameter("port", value=str(emulator.link))])
    estimator = StochliteEstimatorNode(context=context)
    client = Client(context)
    executor = SingleThreadedExecutor(context=context)
    for node in (driver, estimator, client):
        executor.add_node(node)
    assert spin_until(executor, lambda: len(client.states) > 20 and client.commands.get_subscription_count() > 0)
    try:
        yield emulator, driver, client, executor
    finally:
        executor.shutdown()
        for node in (driver, estimator, client):
            node.destroy_node()


def test_the_emulators_realtime_physics_stands_and_trots_upright():
    sim = RealtimeStochliteSimulation()
    try:
        state = sim.reset(standing_joint_targets())
        for _ in range(100):
            state = sim.step(standing_joint_targets())
        assert sim.height_above_ground(state.position) == pytest.approx(0.265, abs=0.01)
        np.testing.assert_allclose(state.linear_acceleration, (0.0, 0.0, 9.81), atol=0.1)  # an IMU at rest
        x0 = state.position[0]
        command = gait_command(np.r_[np.zeros(12), 1.0])
        for k in range(200):
            state = sim.step(joint_targets(foot_targets(0.01 * k, command)))
        assert state.position[0] - x0 > 0.3  # 2 s of the 0.1 m trot
        assert np.abs(state.rpy[:2]).max() < 0.3 and sim.height_above_ground(state.position) > 0.2
        for _ in range(100):
            state = sim.step(None)  # limp: it collapses onto its joint stops or its belly
        assert sim.height_above_ground(state.position) < MIN_HEIGHT_M
    finally:
        sim.close()


@pytest.mark.integration
def test_disarmed_start_hold_on_arming_then_clamped_rate_limited_targets_and_rejections(rig):
    emulator, driver, client, executor = rig
    stand = standing_joint_targets()
    stream(executor, client, stand + 0.3, 0.2)  # disarmed: ignored
    assert not driver.loop.armed
    assert all(list(s.name) == list(JOINT_NAMES) for s in client.states)
    imu_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in client.imu}
    assert client.imu[-1].header.frame_id == "base"
    assert (client.states[-5].header.stamp.sec, client.states[-5].header.stamp.nanosec) in imu_stamps  # one IMU per state
    t_arm = time.monotonic_ns()
    assert call(executor, client.enable, SetBool.Request(data=True)).message.startswith("armed")
    spin_until(executor, lambda: False, 0.2)  # armed, no fresh command: hold
    t_command = time.monotonic_ns()
    target = stand.copy()
    target[1] += 0.5  # fl hip: a 0.5 rad jump
    target[2] = 1.0  # fl knee beyond its upper limit (0)
    stream(executor, client, target, 0.6)
    t_bad = time.monotonic_ns()
    for bad in ([math.nan] * 12, list(target[:11]), [math.inf] + list(target[1:])):
        stream(executor, client, bad, 0.1)
    t_disarm = time.monotonic_ns()
    assert call(executor, client.enable, SetBool.Request(data=False)).message.startswith("disarmed")
    spin_until(executor, lambda: False, 0.2)
    rows = emulator.stop_records()
    assert not positions(rows, before_ns=t_arm)  # disarmed: heartbeats only
    assert len([r for r in rows if r["event"] == "HEARTBEAT" and int(r["t_ns"]) < t_arm]) >= 15
    held = positions(rows, t_arm, t_command)
    assert len(held) >= 10 and np.ptp([p for _, p in held], axis=0).max() < 0.02  # one posture, held
    moving = [p for _, p in positions(rows, t_command, t_bad)]
    steps = np.abs(np.diff([held[-1][1]] + moving, axis=0))
    assert steps.max() <= MAX_STEP + 1e-6  # no jump: at most 0.1 rad per 10 ms cycle
    final = moving[-1]
    assert final[1] == pytest.approx(target[1], abs=1e-5)  # reached after 5 cycles
    assert final[2] == pytest.approx(JOINT_UPPER_RAD[2] - MARGIN, abs=1e-5)  # clamped inside the URDF limit
    after_bad = [p for _, p in positions(rows, t_bad, t_disarm)]
    # rejected commands are ignored: the last safe target stays, then (they feed no watchdog) the measured pose holds
    assert np.allclose(after_bad[0], final, atol=1e-5) and np.all(np.isfinite(after_bad))
    assert np.abs(np.diff(after_bad, axis=0)).max() <= MAX_STEP + 1e-6
    assert driver.loop.rejected >= 15 and driver.loop.watchdog_trips >= 1
    assert not positions(rows, t_disarm + 30_000_000)  # disarmed again: limp
    assert [r["detail"] for r in rows if r["event"] == "ENABLE"][-1] == "0"


@pytest.mark.integration
def test_watchdog_holds_the_measured_pose_and_diagnostics_count_it(rig):
    emulator, driver, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    assert call(executor, client.reset, Trigger.Request()).success  # stands up in the standing pose
    stand = standing_joint_targets()
    lowered = stand.copy()
    lowered[[2, 5, 8, 11]] -= 0.2  # bend the knees a little
    stream(executor, client, lowered, 0.5)
    t_last = time.monotonic_ns()
    spin_until(executor, lambda: False, 1.2)
    measured = np.array(client.states[-1].position)
    assert spin_until(executor, lambda: len(client.diagnostics) >= 2)
    diagnostics = client.last_diagnostics()
    rows = emulator.stop_records()
    after = [p for _, p in positions(rows, t_last + 150_000_000)]
    assert len(after) > 50  # still commanding: hold, not limp
    assert np.abs(after[-1] - measured).max() < 0.05  # the hold is the measured pose
    assert diagnostics["watchdog_trips"] == "1" and diagnostics["holding"] == "True"
    assert diagnostics["rejected_commands"] == "0" and diagnostics["link"] == "connected"
    assert float(diagnostics["loop_rate_hz"]) > 50


@pytest.mark.parametrize("rig", [("faults:=disconnect", "first_s:=2.5", "for_s:=0.3", "every_s:=100")], indirect=True)
@pytest.mark.integration
def test_a_lost_port_is_reopened_the_mcu_keeps_holding_and_commands_resume(rig):
    emulator, driver, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    stand = standing_joint_targets()
    stream(executor, client, stand, 3.5)  # across the disconnect at 2.5 s after the emulator's start
    t_end = time.monotonic_ns()
    counters, armed = driver.loop.counters(), driver.loop.mcu_armed  # before stopping the emulator closes the pty
    rows = emulator.stop_records()
    starts = [int(r["t_ns"]) for r in rows if r["event"] == "fault_start"]
    ends = [int(r["t_ns"]) for r in rows if r["event"] == "fault_end"]
    assert starts and ends
    hellos = [int(r["t_ns"]) for r in rows if r["event"] == "HELLO"]
    assert any(t > ends[0] for t in hellos)  # greeted again on the new pty
    assert counters["link_losses"] >= 1 and counters["reconnects"] >= 1 and counters["link_faults"] >= 1
    assert armed  # the MCU kept the servos on through the reconnect
    resumed = positions(rows, ends[0], t_end)
    assert resumed and np.allclose(resumed[-1][1], stand, atol=1e-5)


@pytest.mark.parametrize("rig", [("faults:=bad_crc,stall,garbage", "first_s:=2.0", "for_s:=0.2", "every_s:=0.5",
                                  "noise:=0.02")], indirect=True)
@pytest.mark.integration
def test_corrupt_stalled_and_garbled_links_are_counted_and_commands_resume(rig):
    emulator, driver, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    stand = standing_joint_targets()
    stream(executor, client, stand, 3.2)  # three bursts, 2.0-3.2 s after the emulator's start
    t_end = time.monotonic_ns()
    counters = driver.loop.counters()
    rows = emulator.stop_records()
    ends = [int(r["t_ns"]) for r in rows if r["event"] == "fault_end"]
    assert len(ends) >= 3
    assert counters["crc_errors"] >= 10 and counters["resyncs"] >= 1 and counters["link_faults"] >= 2
    assert "WATCHDOG" in counters["mcu_errors"]  # the stall starved the MCU: it held
    resumed = positions(rows, ends[-1] + 30_000_000, t_end)
    assert resumed and np.abs(np.diff([p for _, p in resumed], axis=0)).max() <= MAX_STEP + 1e-6
    assert np.allclose(resumed[-1][1], stand, atol=1e-5)


@pytest.mark.parametrize("rig", [("faults:=delay", "delay_ms:=80", "first_s:=2.0", "for_s:=0.3", "every_s:=100")],
                         indirect=True)
@pytest.mark.integration
def test_late_states_are_a_link_fault_the_robot_holds_and_commands_resume(rig):
    emulator, driver, client, executor = rig
    call(executor, client.enable, SetBool.Request(data=True))
    stand = standing_joint_targets()
    faults: list[str] = []
    start = time.monotonic()
    while time.monotonic() - start < 3.2:  # the burst is 2.0-2.3 s after the emulator's start
        client.send(stand)
        spin_until(executor, lambda: False, 0.01)
        if driver.loop.fault and driver.loop.fault not in faults:
            faults.append(driver.loop.fault)
    t_end = time.monotonic_ns()
    counters, fault_at_end = driver.loop.counters(), driver.loop.fault  # before stopping the emulator closes the pty
    rows = emulator.stop_records()
    assert [r["detail"] for r in rows if r["event"] == "fault_end"] == ["delay"]
    assert any("acknowledges commands" in fault for fault in faults), faults  # 8 cycles late > max_ack_lag_cycles
    assert counters["link_faults"] >= 1 and not fault_at_end
    end = next(int(r["t_ns"]) for r in rows if r["event"] == "fault_end")
    resumed = positions(rows, end + 30_000_000, t_end)
    assert resumed and np.allclose(resumed[-1][1], stand, atol=1e-5)


@pytest.mark.parametrize("rig", [("faults:=nan_position", "first_s:=3.0", "for_s:=2.0", "every_s:=100")],
                         indirect=True)
@pytest.mark.integration
def test_nan_positions_never_become_a_target_and_enable_says_no_until_they_end(rig):
    emulator, driver, client, executor = rig
    assert call(executor, client.enable, SetBool.Request(data=True)).success  # holds where it lies
    assert spin_until(executor, lambda: driver.loop.invalid_states > 0, 5.0), "no NaN burst"
    call(executor, client.enable, SetBool.Request(data=False))
    t_refused = time.monotonic_ns()
    refused = call(executor, client.enable, SetBool.Request(data=True))  # arming holds the measured pose: NaN?
    invalid = driver.loop.invalid_states
    assert spin_until(executor, lambda: not driver.loop.fault, 5.0)
    armed = call(executor, client.enable, SetBool.Request(data=True))
    t_armed = time.monotonic_ns()
    spin_until(executor, lambda: False, 0.3)
    assert spin_until(executor, lambda: client.last_diagnostics()["invalid_states"] != "0")
    diagnostics = client.last_diagnostics()
    rows = emulator.stop_records()
    start, end = (next(int(r["t_ns"]) for r in rows if r["event"] == event) for event in ("fault_start", "fault_end"))
    assert start < t_refused < end < t_armed
    assert not refused.success and "invalid state from the MCU: position[0] = nan" in refused.message, refused.message
    assert armed.success, armed.message
    assert invalid >= 50 and int(diagnostics["invalid_states"]) >= invalid  # 2 s of 100 Hz NaN states
    targets = positions(rows)
    assert targets and all(np.all(np.isfinite(p)) for _, p in targets)  # the hold never held a NaN
    assert not positions(rows, start + 50_000_000, end)  # a link fault: HEARTBEAT only, the MCU keeps its target
    assert positions(rows, t_armed)  # holding again after the burst


@pytest.mark.integration
def test_robot_side_publishes_task_steps_and_follows_joint_commands(rig):
    emulator, driver, client, executor = rig
    assert spin_until(executor, lambda: len(client.tasks) > 10)
    lying = np.array(client.tasks[-1].observation)
    assert lying[9] < 0.1 and np.abs(lying[:2]).max() < 0.1  # the emulated robot starts lying limp on its belly
    call(executor, client.enable, SetBool.Request(data=True))
    assert call(executor, client.reset, Trigger.Request()).success  # stands up
    count = len(client.tasks)
    stream(executor, client, standing_joint_targets(), 1.0)
    tasks = client.tasks[count:]
    emulator.stop_records()
    assert len(tasks) > 50
    episode = [t.step for t in tasks]
    assert 0 in episode and episode[episode.index(0):][:5] == [0, 1, 2, 3, 4]  # restarted by the reset
    last = np.array(tasks[-1].observation)
    assert last.shape == (14,) and not tasks[-1].terminated, last.round(3).tolist()
    assert last[9] == pytest.approx(0.265, abs=0.02)  # standing height from stance-foot kinematics
    assert np.abs(last[:2]).max() < 0.1 and np.abs(last[3:6]).max() < 0.1  # upright, still
    assert tasks[-1].reward == pytest.approx(0.5, abs=0.1)  # upright and still
    np.testing.assert_allclose(client.states[-1].position, standing_joint_targets(), atol=0.05)
    assert client.rpy and client.rpy[-1].header.frame_id == "base"


@pytest.mark.integration
def test_a_driver_for_the_wrong_robot_never_connects_and_says_why(start_emulator):
    emulator = start_emulator()  # the leg's MCU
    link = SerialLink(str(emulator.link), 1_000_000, 50_000_000, 100_000_000, Robot.STOCHLITE)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        link.poll(time.monotonic_ns())
        time.sleep(0.01)
    link.close()
    emulator.stop()
    assert not link.connected and link.handshakes == 0
    assert "drives a leg, this driver the stochlite: refusing to connect or arm" in link.last_error


@pytest.mark.integration
def test_the_robot_parameter_picks_the_stochlite_profile_and_a_missing_port_is_named():
    from stochlite_bringup.node_parameters import config_defaults
    from stochlite_bringup.package_files import package_file

    from leg_driver.stochlite_hw_node import PARAMETERS
    assert set(config_defaults("stochlite_hw_interface.yaml", "stochlite_hw_interface")) == set(PARAMETERS)
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "leg_driver.hw_interface_node", "--ros-args", "-r",
                           "__node:=stochlite_hw_interface", "--params-file",
                           str(package_file("config", "stochlite_hw_interface.yaml"))],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "parameter 'port' is empty" in proc.stderr and "mdemorl emulate robot:=stochlite" in proc.stderr


def test_base_tilt_from_the_imu_quaternion():
    assert base_tilt_rad((0.0, 0.0, 0.0, 1.0)) == pytest.approx(0.0)
    assert base_tilt_rad((0.0, math.sin(0.25), 0.0, math.cos(0.25))) == pytest.approx(0.5)  # pitched 0.5 rad
    assert base_tilt_rad((1.0, 0.0, 0.0, 0.0)) == pytest.approx(math.pi)  # on its back


def test_the_emulated_operator_sets_a_fallen_robot_upright_after_a_second(tmp_path):
    mcu = EmulatedStochliteMcu(tmp_path / "sl.pty", FaultPlan(), operator_s=1.0)
    try:
        sim = mcu.sim
        pybullet.resetBasePositionAndOrientation(sim._body, (0.0, 0.0, 0.1), (1.0, 0.0, 0.0, 0.0),
                                                 physicsClientId=sim._client)  # on its back
        now = time.monotonic_ns()
        for k in range(99):
            mcu.tick(now + k * 10_000_000)
        assert mcu.rightings == 0
        for k in range(99, 110):
            mcu.tick(now + k * 10_000_000)
        assert mcu.rightings == 1
        assert base_tilt_rad(sim.state().quaternion) < 0.1
    finally:
        mcu.close()
