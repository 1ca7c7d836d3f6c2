"""``hw_interface_node`` with ``robot:=stochlite`` (node ``stochlite_hw_interface``): StochLite's 12 position servos and IMU behind the graph contract.

A thin ROS shell over :class:`~leg_driver.position_loop.PositionLoop` (100 Hz, on a thread: at 10 ms
periods the interpreter lock shared with rclpy costs little; the leg's 500 Hz loop needs its own process):

* publishes ``/stochlite/joint_states`` (12 joints: rad, rad/s, N*m) and ``/stochlite/imu`` (frame
  ``base``: quaternion, gyro, specific force) for every state frame (stamp = host time of arrival);
* applies the latest ``/stochlite/joint_commands`` (12 targets [rad], clamped and rate-limited);
  NaN, inf or a wrong length is rejected, counted, logged and ignored (the last safe target holds);
* ``/stochlite/enable`` arms (servos hold until a fresh command; it answers no, with the reason, while the
  driver cannot arm: :mod:`~leg_driver.driver_node`) or disarms (torque off, limp);
  ``/stochlite/reset`` moves to the standing pose (armed only) and then publishes the episode's start
  on ``/stochlite/episode_start`` for the estimator; ``/diagnostics`` every ``diagnostics_period_s`` (its
  level covers the whole period).

Parameters: ``stochlite_bringup/config/stochlite_hw_interface.yaml``.
"""
from __future__ import annotations

from geometry_msgs.msg import Vector3
from sensor_msgs.msg import Imu
from std_msgs.msg import Header
from stochlite_bringup.graph_topics import IMU_TOPIC, JOINT_COMMANDS_TOPIC, LATEST_MESSAGE_QOS, ROBOT_QOS
from stochlite_bringup.node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, one_of
from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_simulation import JOINT_LOWER_RAD, JOINT_NAMES, JOINT_UPPER_RAD

from .driver_node import LINK_SETTINGS, SERIAL_PARAMETERS, DriverNode
from .loop_timing import NS_PER_S
from .mcu_loop import ResetRequest
from .position_loop import PositionLimits, PositionLoop, PositionSettings
from .protocol_frames import Robot, StochliteState
from .serial_link import SerialLink

NODE_NAME = "stochlite_hw_interface"
NAMESPACE = "/stochlite"
RESET_SETTINGS = ("reset_tolerance_rad", "reset_timeout_s", "reset_max_step_rad", "reset_max_tilt_rad")
EPISODE_START_TOPIC = "episode_start"  # std_msgs/Header: stamp = the first state of the episode after a reset

PARAMETERS = {
    "robot": Param(str, "Robot profile: stochlite (12 position servos + IMU at 100 Hz).", one_of("stochlite")),
    "port": Param(str, "Serial device of the MCU (e.g. /dev/ttyACM0, or the link `mdemorl emulate robot:=stochlite` "
                  "prints)."),
    **SERIAL_PARAMETERS,
    "loop_rate_hz": Param(int, "Position loop rate [Hz]: one POSITION or HEARTBEAT frame per cycle.", AT_LEAST_1),
    "max_step_rad": Param(float, "Largest change of a servo target per cycle [rad] (rate limit).", POSITIVE),
    "joint_margin_rad": Param(float, "Targets stay this far inside the URDF limits [rad].", NON_NEGATIVE),
    "command_timeout_s": Param(float, "Watchdog: hold the measured positions when the newest command is older [s].",
                               POSITIVE),
    "reset_tolerance_rad": Param(float, "Reset succeeds once every servo is this close to the standing pose [rad] "
                                 "for 10 cycles.", POSITIVE),
    "reset_timeout_s": Param(float, "Reset fails after this long [s].", POSITIVE),
    "reset_max_tilt_rad": Param(float, "A reset waits (until reset_timeout_s) while the IMU says the base is "
                                "tilted more than this from upright [rad] (fallen, on its back): the robot needs "
                                "the operator.", POSITIVE),
    "reset_max_step_rad": Param(float, "Largest change of a servo target per cycle during a reset [rad]: it may stand "
                                "the robot up from lying, which a fast move flips over.", POSITIVE),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected commands."),
}


class StochliteHwInterfaceNode(DriverNode):
    """The serial driver of StochLite as a ROS 2 node; ``loop`` is its position loop."""

    JOINT_NAMES = JOINT_NAMES
    COMMAND_KIND = "joint"
    REJECTED_ACTION = "keeping the last safe target"
    ARMED_MESSAGE = "armed: servos hold their positions until a fresh joint command"
    DISARMED_MESSAGE = "disarmed: servo torque off (limp)"
    RESET_DONE = "standing pose reached"
    PERIOD_ERRORS = ("p99",)

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, PARAMETERS, JOINT_COMMANDS_TOPIC, NAMESPACE, **node_kwargs)
        p = self.params
        margin = p["joint_margin_rad"]
        limits = PositionLimits(tuple(JOINT_LOWER_RAD + margin), tuple(JOINT_UPPER_RAD - margin), p["max_step_rad"])
        settings = PositionSettings(**{name: p[name] for name in (*LINK_SETTINGS, *RESET_SETTINGS)},
                                    rate_hz=p["loop_rate_hz"])
        link = SerialLink(p["port"], p["baud"], int(p["handshake_timeout_s"] * NS_PER_S),
                          int(p["reconnect_period_s"] * NS_PER_S), Robot.STOCHLITE)
        self._imu_pub = self.create_publisher(Imu, f"{NAMESPACE}/{IMU_TOPIC}", ROBOT_QOS)
        self._episode_pub = self.create_publisher(Header, f"{NAMESPACE}/{EPISODE_START_TOPIC}", LATEST_MESSAGE_QOS)
        self._episode_pending = False
        self.loop = PositionLoop(link, limits, settings, self._hand_over)
        self.loop.start()
        self.get_logger().info(
            f"driving 'stochlite' on {p['port']} at {p['loop_rate_hz']} Hz, targets within the URDF limits, at most "
            f"{p['max_step_rad']} rad per cycle; disarmed (servos limp) until {self._enable_service.service_name} is "
            "called with true")

    def _published(self, state: StochliteState, stamp) -> None:
        """The state's IMU, and the episode's start after a reset."""
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, "base"
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = map(float, state.quaternion)
        imu.angular_velocity = Vector3(x=state.gyro[0], y=state.gyro[1], z=state.gyro[2])
        imu.linear_acceleration = Vector3(x=state.accel[0], y=state.accel[1], z=state.accel[2])
        self._imu_pub.publish(imu)
        if self._episode_pending:
            self._episode_pending = False
            self._episode_pub.publish(Header(stamp=stamp, frame_id="base"))

    def _start_reset(self) -> ResetRequest:
        return self.loop.start_reset(standing_joint_targets(), self.params["reset_timeout_s"])

    def _reset_finished(self, ok: bool) -> None:
        self._episode_pending = ok
