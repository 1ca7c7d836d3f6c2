"""``sim_bridge_node``: a simulated robot behind the topics and services of the hardware interface.

``robot:=leg`` simulates the 2R leg and ``robot:=stochlite`` the quadruped in PyBullet; a gymnasium id
(``HalfCheetah-v5``, ...) runs that task in MuJoCo. Names are under the robot's namespace
(``task_names.robot_namespace``: ``leg``, ``stochlite``, ``halfcheetah``, ...):

* publishes ``<ns>/joint_states`` (sensor_msgs/JointState; leg: hip, knee with effort = applied
  torque [N*m]; MuJoCo: the hinge and slide joints; stamp = simulation time) and ``/clock``;
* MuJoCo tasks and StochLite also publish ``<ns>/task_step`` (mdemorl_msgs/TaskStep: the task's
  observation, reward and termination, which depend on simulator internals that joint states lack);
  StochLite also ``<ns>/imu`` (sensor_msgs/Imu) and ``<ns>/torso_rpy`` (geometry_msgs/Vector3Stamped);
* subscribes ``<ns>/effort_commands`` (std_msgs/Float64MultiArray: leg ``[hip, knee]`` in N*m,
  clamped to ``max_torque``; MuJoCo: the task's action, clamped to its action box) or, for StochLite,
  ``<ns>/joint_commands`` (12 servo position targets [rad], clamped to the URDF's limits);
* serves ``<ns>/enable`` (std_srvs/SetBool; starts disarmed; disarmed applies the idle command: zero,
  or StochLite's standing pose) and ``<ns>/reset`` (std_srvs/Trigger; leg: joints to the start of the
  desired foot path, at rest; StochLite: the standing pose plus noise; MuJoCo: the task's own reset);
* publishes ``/diagnostics`` every ``diagnostics_period_s``.

With ``lockstep`` each command advances the simulation exactly one step and then publishes the new
state and clock, so training runs as fast as the agent. Without it a timer steps in real time holding
the latest command. A command with the wrong length or a NaN/inf is rejected, counted and logged, and
that step applies the idle command. Parameters: ``config/sim_bridge.yaml``.
"""

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3, Vector3Stamped
from mdemorl_msgs.msg import TaskStep
from numpy.typing import NDArray
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from .graph_topics import (CLOCK_TOPIC, DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, EFFORT_COMMANDS_TOPIC, ENABLE_SERVICE,
                           IMU_TOPIC, JOINT_COMMANDS_TOPIC, JOINT_STATES_TOPIC, RESET_SERVICE, ROBOT_QOS,
                           TASK_STEP_TOPIC, TORSO_RPY_TOPIC)
from .node_diagnostics import diagnostics_message
from .node_main import run_node
from .node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters, one_of, within
from .sim_robots import SimulatedStochlite, start_joint_angles, simulated_robot
from .task_names import LEG_TASK_NAME, TASK_NAMES, robot_namespace
from .tasks.stochlite_simulation import MAX_SLOPE_DEG
from .tasks.leg_simulation import STALL_TORQUE_NM

NODE_NAME = "sim_bridge"
NS_PER_S = 1_000_000_000

PARAMETERS = {
    "robot": Param(str, "Simulated robot: leg or stochlite (PyBullet) or a gymnasium MuJoCo id; its namespace "
                   "prefixes the topics (<ns>/joint_states, ...).", one_of(*TASK_NAMES)),
    "seed": Param(int, "Seed of the reset noise of a MuJoCo task or StochLite (the leg always resets to "
                 "the same pose).", NON_NEGATIVE),
    "physics_rate_hz": Param(int, "Leg only: physics steps per simulated second (time step 1/rate), also the "
                             "timer rate when lockstep is false. MuJoCo tasks step at their own dt.", AT_LEAST_1),
    "lockstep": Param(bool, "true: each effort command advances exactly one step, then the state and /clock are "
                      "published. false: a wall-clock timer steps in real time holding the latest command."),
    "max_torque": Param(float, "Leg only: commanded joint torques are clamped to +-max_torque [N*m]; at most the "
                        "stall torque.", within(0.0, STALL_TORQUE_NM)),
    "slope_roll_deg": Param(float, "StochLite only: roll of the ground plane [deg].",
                            within(-MAX_SLOPE_DEG, MAX_SLOPE_DEG)),
    "slope_pitch_deg": Param(float, "StochLite only: pitch of the ground plane [deg]; -5 is a 5 degree uphill "
                             "ahead.", within(-MAX_SLOPE_DEG, MAX_SLOPE_DEG)),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected effort commands "
                                 "(all are counted).", POSITIVE),
    "diagnostics_period_s": Param(float, "Seconds between two /diagnostics messages.", POSITIVE),
}


class SimBridgeNode(Node):
    """A simulated robot as a ROS 2 node; ``rejected_commands`` counts refused commands."""

    def __init__(self, **node_kwargs) -> None:
        self._robot = None  # destroy_node closes it only if the constructor got that far
        super().__init__(NODE_NAME, **node_kwargs)
        params = declare_parameters(self, NODE_NAME, PARAMETERS)
        robot, ns = params["robot"], robot_namespace(params["robot"])
        self._lockstep = params["lockstep"]
        self._reject_log_period_s = params["reject_log_period_s"]
        self._diagnostics_period_s = params["diagnostics_period_s"]
        self._robot = simulated_robot(robot, params["seed"], 1.0 / params["physics_rate_hz"], params["max_torque"],
                                      params["slope_roll_deg"], params["slope_pitch_deg"])
        self._step_ns = round(self._robot.timestep_s * NS_PER_S)
        self._zero = self._robot.idle_command
        self._armed = False
        self._held = self._zero  # latest valid command (zero-order hold when not in lockstep)
        self.rejected_commands = 0
        self._resets = 0
        self._steps_at_diagnostics = 0

        self._state_pub = self.create_publisher(JointState, f"{ns}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, ROBOT_QOS)
        self._task_pub = (None if robot == LEG_TASK_NAME
                          else self.create_publisher(TaskStep, f"{ns}/{TASK_STEP_TOPIC}", ROBOT_QOS))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        quadruped = isinstance(self._robot, SimulatedStochlite)
        self._imu_pub = self.create_publisher(Imu, f"{ns}/{IMU_TOPIC}", ROBOT_QOS) if quadruped else None
        self._rpy_pub = self.create_publisher(Vector3Stamped, f"{ns}/{TORSO_RPY_TOPIC}", ROBOT_QOS) if quadruped else None
        command_topic = JOINT_COMMANDS_TOPIC if quadruped else EFFORT_COMMANDS_TOPIC
        self._command_sub = self.create_subscription(
            Float64MultiArray, f"{ns}/{command_topic}", self._on_command, ROBOT_QOS
        )
        enable = self.create_service(SetBool, f"{ns}/{ENABLE_SERVICE}", self._on_enable)
        self.create_service(Trigger, f"{ns}/{RESET_SERVICE}", self._on_reset)
        if not self._lockstep:
            self.create_timer(self._robot.timestep_s, self._on_timer)
        self.create_timer(self._diagnostics_period_s, self._publish_diagnostics)
        self._publish()
        limit = (f"torques clamped to {params['max_torque']} N*m" if robot == LEG_TASK_NAME
                 else "servo targets clamped to the URDF's joint limits" if quadruped
                 else f"actions clamped to [{self._robot.command_low.min()}, {self._robot.command_high.max()}]")
        self.get_logger().info(
            f"simulating {robot!r} every {self._robot.timestep_s * 1e3:g} ms, "
            f"{'lockstep' if self._lockstep else 'wall-clock timer'}, {limit}; "
            f"disarmed until {enable.service_name} is called with true"
        )

    @property
    def armed(self) -> bool:
        """Whether effort commands are applied (else zero)."""
        return self._armed

    def destroy_node(self) -> None:
        super().destroy_node()
        if self._robot is not None:
            self._robot.close()

    def _on_command(self, msg: Float64MultiArray) -> None:
        command = self._validated(msg)
        if self._lockstep:
            self._step(command)
        else:
            self._held = command

    def _on_timer(self) -> None:
        self._step(self._held)

    def _validated(self, msg: Float64MultiArray) -> NDArray[np.float64]:
        """The command, or zeros (counted and logged) if it is malformed."""
        command = np.asarray(msg.data, dtype=np.float64)
        if command.shape == self._zero.shape and np.all(np.isfinite(command)):
            return command
        self.rejected_commands += 1
        names = self._robot.command_names
        if command.shape != self._zero.shape:
            problem = f"has {command.size} values, expected {len(names)}"
            fix = f"publish data=[{', '.join(names)}] in {self._robot.command_unit}"
        else:
            problem = "contains NaN or inf"
            fix = "check the policy output for NaN/inf before publishing"
        self.get_logger().warning(
            f"rejected command {command.tolist()} on {self._command_sub.topic_name}: {problem}; "
            f"applying the idle command ({self.rejected_commands} rejected so far). Fix: {fix}.",
            throttle_duration_sec=self._reject_log_period_s,
        )
        return self._zero

    def _step(self, command: NDArray[np.float64]) -> None:
        self._robot.step(command if self._armed else self._zero)
        self._publish()

    def _publish(self) -> None:
        stamp = Time(nanoseconds=self._robot.steps * self._step_ns).to_msg()
        q, qdot, effort = self._robot.joint_state()
        state = JointState(name=list(self._robot.joint_names), position=q.tolist(), velocity=qdot.tolist(),
                           effort=effort.tolist())
        state.header.stamp = stamp
        self._state_pub.publish(state)
        feedback = self._robot.feedback
        if self._task_pub is not None and feedback is not None:
            msg = TaskStep(step=feedback.step, observation=feedback.observation.tolist(), reward=feedback.reward,
                           terminated=feedback.terminated)
            msg.header.stamp = stamp
            self._task_pub.publish(msg)
        if self._imu_pub is not None:
            self._publish_imu(stamp)
        self._clock_pub.publish(Clock(clock=stamp))

    def _publish_imu(self, stamp) -> None:
        quaternion, rates, specific_force = self._robot.imu()
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, "base"
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = map(float, quaternion)
        imu.angular_velocity = Vector3(x=float(rates[0]), y=float(rates[1]), z=float(rates[2]))
        imu.linear_acceleration = Vector3(x=float(specific_force[0]), y=float(specific_force[1]),
                                          z=float(specific_force[2]))
        self._imu_pub.publish(imu)
        roll, pitch, yaw = self._robot.state.rpy
        rpy = Vector3Stamped(vector=Vector3(x=float(roll), y=float(pitch), z=float(yaw)))
        rpy.header.stamp, rpy.header.frame_id = stamp, "base"
        self._rpy_pub.publish(rpy)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._armed = request.data
        self._held = self._zero  # never resume an old command on re-arming
        response.success = True
        response.message = "armed: effort commands are applied" if self._armed else "disarmed: zero command"
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self._robot.reset()
        self._resets += 1
        self._held = self._zero
        self._publish()
        response.success = True
        return response

    def _publish_diagnostics(self) -> None:
        steps = self._robot.steps
        rate = (steps - self._steps_at_diagnostics) / self._diagnostics_period_s
        self._steps_at_diagnostics = steps
        values = {"armed": self._armed, "lockstep": self._lockstep, "steps_per_s": round(rate, 1),
                  "sim_time_s": round(steps * self._robot.timestep_s, 3), "resets": self._resets,
                  "rejected_commands": self.rejected_commands}
        problem = f"{self.rejected_commands} effort commands rejected" if self.rejected_commands else ""
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run stochlite_bringup sim_bridge_node``."""
    return run_node(SimBridgeNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
