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

With ``policy_runner`` (``mdemorl train robot:=stochlite sim:=none``) the node trains the robot itself: the policy
runner acts on the loop's thread, each cycle's 12 targets computed from that cycle's state (the estimator's
observation and reward, :class:`~leg_driver.runner_profiles.StochliteProfile`, with the slope of
``estimator.slope_roll_deg`` / ``estimator.slope_pitch_deg``, whose defaults are ``stochlite_estimator.yaml``'s),
and the node publishes transitions, returns and ``/stochlite/gait_command`` (:mod:`~leg_driver.onboard_agent`).

Parameters: ``stochlite_bringup/config/stochlite_hw_interface.yaml``.
"""
from __future__ import annotations

from geometry_msgs.msg import Vector3
from mdemorl_learner.episode_reports import gait_message
from sensor_msgs.msg import Imu
from std_msgs.msg import Float64MultiArray, Header
from stochlite_bringup.graph_topics import (GAIT_COMMAND_TOPIC, IMU_TOPIC, JOINT_COMMANDS_TOPIC, LATEST_MESSAGE_QOS,
                                            ROBOT_QOS)
from stochlite_bringup.node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters, one_of
from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_simulation import JOINT_LOWER_RAD, JOINT_NAMES, JOINT_UPPER_RAD

from .driver_node import LINK_SETTINGS, SERIAL_PARAMETERS, TRAINING_PARAMETERS, DriverNode
from .loop_timing import NS_PER_S
from .mcu_loop import ResetRequest
from .onboard_runner import OnboardRunner
from .position_loop import PositionLimits, PositionLoop, PositionSettings
from .protocol_frames import Robot, StochliteState
from .runner_profiles import StochliteProfile
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
    **TRAINING_PARAMETERS,
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
        self._profile = self._start_training() if p["policy_runner"] else None
        self.loop.start()
        self.get_logger().info(
            f"driving 'stochlite' on {p['port']} at {p['loop_rate_hz']} Hz, targets within the URDF limits, at most "
            f"{p['max_step_rad']} rad per cycle; disarmed (servos limp) until {self._enable_service.service_name} is "
            "called with true")

    def _start_training(self) -> StochliteProfile:
        """The policy runner on the loop's thread, and the agent's part; the robot's profile."""
        from .stochlite_estimator_node import NODE_NAME as ESTIMATOR, PARAMETERS as ESTIMATOR_PARAMETERS

        slope = declare_parameters(self, NODE_NAME, ESTIMATOR_PARAMETERS, section=ESTIMATOR, prefix="estimator.")
        profile = StochliteProfile(slope["slope_roll_deg"], slope["slope_pitch_deg"], self.params["reset_timeout_s"])
        runner = OnboardRunner(self.runner_settings(), profile, self.loop,
                               lambda message: self.agent.on_runner(message))
        self.loop.policy = runner.command
        self.start_agent(profile, runner)
        self._gait_pub = self.create_publisher(Float64MultiArray, f"{NAMESPACE}/{GAIT_COMMAND_TOPIC}", ROBOT_QOS)
        self._gait_published = None
        return profile

    def episode_began(self) -> None:
        self._episode_pending = True  # the estimator node restarts its gait phase, as the runner did

    def _published(self, state: StochliteState, stamp) -> None:
        """The state's IMU, the episode's start after a reset, and while training the gait the policy chose."""
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, "base"
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = map(float, state.quaternion)
        imu.angular_velocity = Vector3(x=state.gyro[0], y=state.gyro[1], z=state.gyro[2])
        imu.linear_acceleration = Vector3(x=state.accel[0], y=state.accel[1], z=state.accel[2])
        self._imu_pub.publish(imu)
        if self._episode_pending:
            self._episode_pending = False
            self._episode_pub.publish(Header(stamp=stamp, frame_id="base"))
        gait = self._profile.gait if self._profile is not None else None
        if gait is not None and gait is not self._gait_published:
            self._gait_published = gait
            self._gait_pub.publish(gait_message(gait))

    def _start_reset(self) -> ResetRequest:
        return self.loop.start_reset(standing_joint_targets(), self.params["reset_timeout_s"])

    def _reset_finished(self, ok: bool) -> None:
        self._episode_pending = ok
