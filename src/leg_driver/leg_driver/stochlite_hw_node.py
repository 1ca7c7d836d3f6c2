"""``hw_interface_node`` with ``robot:=stochlite`` (node ``stochlite_hw_interface``): StochLite's 12 position servos and IMU behind the graph contract.

A thin ROS shell over :class:`~leg_driver.position_loop.PositionLoop` (100 Hz, on a thread: at 10 ms
periods the interpreter lock shared with rclpy costs little; the leg's 500 Hz loop needs its own process):

* publishes ``/stochlite/joint_states`` (12 joints: rad, rad/s, N*m) and ``/stochlite/imu`` (frame
  ``base``: quaternion, gyro, specific force) for every state frame (stamp = host time of arrival);
* applies the latest ``/stochlite/joint_commands`` (12 targets [rad], clamped and rate-limited);
  NaN, inf or a wrong length is rejected, counted, logged and ignored (the last safe target holds);
* ``/stochlite/enable`` arms (servos hold until a fresh command) or disarms (torque off, limp);
  ``/stochlite/reset`` moves to the standing pose (armed only) and then publishes the episode's start
  on ``/stochlite/episode_start`` for the estimator; ``/diagnostics`` every ``diagnostics_period_s``.

Parameters: ``stochlite_bringup/config/stochlite_hw_interface.yaml``.
"""
from __future__ import annotations

import collections
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time as RosTime
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ENABLE_SERVICE, IMU_TOPIC,
                                            JOINT_COMMANDS_TOPIC, JOINT_STATES_TOPIC, LATEST_MESSAGE_QOS,
                                            RESET_SERVICE, ROBOT_QOS)
from stochlite_bringup.node_diagnostics import diagnostics_message
from stochlite_bringup.node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters, one_of
from stochlite_bringup.node_parameters import parameter_error
from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_simulation import JOINT_LOWER_RAD, JOINT_NAMES, JOINT_UPPER_RAD

from .loop_timing import NS_PER_S
from .position_loop import PositionLimits, PositionLoop, PositionSample, PositionSettings
from .protocol_frames import Robot
from .serial_link import SerialLink

NODE_NAME = "stochlite_hw_interface"
NAMESPACE = "/stochlite"
EPISODE_START_TOPIC = "episode_start"  # std_msgs/Header: stamp = the first state of the episode after a reset
STATE_BACKLOG = 8

PARAMETERS = {
    "robot": Param(str, "Robot profile: stochlite (12 position servos + IMU at 100 Hz).", one_of("stochlite")),
    "port": Param(str, "Serial device of the MCU (e.g. /dev/ttyACM0, or the link `mdemorl emulate robot:=stochlite` "
                  "prints)."),
    "baud": Param(int, "Baud rate of a real UART (USB CDC and ptys ignore it).", AT_LEAST_1),
    "loop_rate_hz": Param(int, "Position loop rate [Hz]: one POSITION or HEARTBEAT frame per cycle.", AT_LEAST_1),
    "spin_us": Param(int, "Busy-wait this long [us] before each deadline instead of sleeping.", NON_NEGATIVE),
    "max_step_rad": Param(float, "Largest change of a servo target per cycle [rad] (rate limit).", POSITIVE),
    "joint_margin_rad": Param(float, "Targets stay this far inside the URDF limits [rad].", NON_NEGATIVE),
    "command_timeout_s": Param(float, "Watchdog: hold the measured positions when the newest command is older [s].",
                               POSITIVE),
    "state_timeout_cycles": Param(int, "Link fault after more cycles than this without a state frame.", AT_LEAST_1),
    "max_ack_lag_cycles": Param(int, "Link fault when the MCU acknowledges commands more frames late than this.",
                                AT_LEAST_1),
    "handshake_timeout_s": Param(float, "Resend HELLO after this long without HELLO_ACK [s].", POSITIVE),
    "reconnect_period_s": Param(float, "Retry a lost or unopenable port this often [s].", POSITIVE),
    "reset_tolerance_rad": Param(float, "Reset succeeds once every servo is this close to the standing pose [rad] "
                                 "for 10 cycles.", POSITIVE),
    "reset_timeout_s": Param(float, "Reset fails after this long [s].", POSITIVE),
    "reset_max_tilt_rad": Param(float, "A reset waits (until reset_timeout_s) while the IMU says the base is "
                                "tilted more than this from upright [rad] (fallen, on its back): the robot needs "
                                "the operator.", POSITIVE),
    "reset_max_step_rad": Param(float, "Largest change of a servo target per cycle during a reset [rad]: it may stand "
                                "the robot up from lying, which a fast move flips over.", POSITIVE),
    "diagnostics_period_s": Param(float, "Seconds between two /diagnostics messages.", POSITIVE),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected commands."),
}


class _Until:
    def __init__(self, predicate) -> None:
        self._predicate = predicate

    def __await__(self):
        while not self._predicate():
            yield


class StochliteHwInterfaceNode(Node):
    """The serial driver of StochLite as a ROS 2 node; ``loop`` is its position loop."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        if not p["port"]:
            raise parameter_error(NODE_NAME, "port", "is empty: set the MCU's serial device (port:=/dev/ttyACM0, "
                                  "or the link `mdemorl emulate robot:=stochlite` prints)")
        self.params = p
        margin = p["joint_margin_rad"]
        limits = PositionLimits(tuple(JOINT_LOWER_RAD + margin), tuple(JOINT_UPPER_RAD - margin), p["max_step_rad"])
        settings = PositionSettings(p["loop_rate_hz"], p["spin_us"], p["command_timeout_s"], p["state_timeout_cycles"],
                                    p["max_ack_lag_cycles"], p["reset_tolerance_rad"], p["reset_timeout_s"],
                                    p["reset_max_step_rad"], p["reset_max_tilt_rad"])
        link = SerialLink(p["port"], p["baud"], int(p["handshake_timeout_s"] * NS_PER_S),
                          int(p["reconnect_period_s"] * NS_PER_S), Robot.STOCHLITE)
        self._state_pub = self.create_publisher(JointState, f"{NAMESPACE}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._imu_pub = self.create_publisher(Imu, f"{NAMESPACE}/{IMU_TOPIC}", ROBOT_QOS)
        self._episode_pub = self.create_publisher(Header, f"{NAMESPACE}/{EPISODE_START_TOPIC}", LATEST_MESSAGE_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._command_sub = self.create_subscription(Float64MultiArray, f"{NAMESPACE}/{JOINT_COMMANDS_TOPIC}",
                                                     self._on_command, ROBOT_QOS)
        enable = self.create_service(SetBool, f"{NAMESPACE}/{ENABLE_SERVICE}", self._on_enable)
        self.create_service(Trigger, f"{NAMESPACE}/{RESET_SERVICE}", self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self._new_states: collections.deque[PositionSample] = collections.deque(maxlen=STATE_BACKLOG)
        self._state_ready = self.create_guard_condition(self._publish_states)
        self._episode_pending = False
        self._window_start_ns = time.monotonic_ns()
        self.loop = PositionLoop(link, limits, settings, self._hand_over)
        self.loop.start()
        self.get_logger().info(
            f"driving 'stochlite' on {p['port']} at {p['loop_rate_hz']} Hz, targets within the URDF limits, at most "
            f"{p['max_step_rad']} rad per cycle; disarmed (servos limp) until {enable.service_name} is called with true")

    def destroy_node(self) -> None:
        if hasattr(self, "loop"):
            self.loop.stop()
        super().destroy_node()

    def _hand_over(self, sample: PositionSample) -> None:
        """Loop thread: queue a new state for the executor."""
        self._new_states.append(sample)
        self._state_ready.trigger()

    def _publish_states(self) -> None:
        wall_minus_monotonic = self.get_clock().now().nanoseconds - time.monotonic_ns()
        while self._new_states:
            sample = self._new_states.popleft()
            s = sample.state
            stamp = RosTime(nanoseconds=sample.received_ns + wall_minus_monotonic).to_msg()
            msg = JointState(name=list(JOINT_NAMES), position=list(s.position), velocity=list(s.velocity),
                             effort=list(s.torque))
            msg.header.stamp = stamp
            self._state_pub.publish(msg)
            imu = Imu()
            imu.header.stamp, imu.header.frame_id = stamp, "base"
            imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = map(float, s.quaternion)
            imu.angular_velocity = Vector3(x=s.gyro[0], y=s.gyro[1], z=s.gyro[2])
            imu.linear_acceleration = Vector3(x=s.accel[0], y=s.accel[1], z=s.accel[2])
            self._imu_pub.publish(imu)
            if self._episode_pending:
                self._episode_pending = False
                self._episode_pub.publish(Header(stamp=stamp, frame_id="base"))

    def _on_command(self, msg: Float64MultiArray) -> None:
        problem = self.loop.offer(msg.data, time.monotonic_ns())
        if problem:
            self.get_logger().warning(
                f"rejected joint command {list(msg.data)} on {self._command_sub.topic_name}: it {problem}; keeping the "
                f"last safe target ({self.loop.rejected} rejected so far)",
                throttle_duration_sec=self.params["reject_log_period_s"])

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.loop.set_armed(request.data)
        response.success = True
        response.message = ("armed: servos hold their positions until a fresh joint command" if request.data
                            else "disarmed: servo torque off (limp)")
        if request.data and self.loop.fault:
            response.message += f", once the link is healthy ({self.loop.fault})"
        self.get_logger().info(response.message)
        return response

    async def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """A coroutine: states keep flowing while the servos move to the standing pose."""
        reset = self.loop.start_reset(standing_joint_targets(), self.params["reset_timeout_s"])
        await _Until(reset.done.is_set)
        response.success = reset.ok
        response.message = f"standing pose reached: {reset.message}" if reset.ok else f"reset failed: {reset.message}"
        self._episode_pending = reset.ok
        if reset.ok:
            self.get_logger().info(response.message)
        else:
            self.get_logger().error(response.message)
        return response

    def _publish_diagnostics(self) -> None:
        now = time.monotonic_ns()
        counters = self.loop.counters()
        elapsed_s = (now - self._window_start_ns) / NS_PER_S
        self._window_start_ns = now
        values = {"loop_rate_hz": round(counters.get("cycles", 0) / elapsed_s, 1),
                  "period_error_p99_ms": round(counters.get("period_p99_ms", 0.0), 4),
                  **{k: v for k, v in counters.items() if k not in ("cycles", "fault") and not k.startswith("period_")},
                  "armed": self.loop.armed}
        self._diagnostics_pub.publish(diagnostics_message(self, values, str(counters["fault"])))
