"""``sim_bridge_node``: the simulated leg behind the topics and services of the hardware interface.

* publishes ``<robot>/joint_states`` (sensor_msgs/JointState: hip, knee; effort = applied
  torque [N*m]; stamp = simulation time) and ``/clock`` (rosgraph_msgs/Clock);
* subscribes ``<robot>/effort_commands`` (std_msgs/Float64MultiArray, ``[hip, knee]`` in N*m,
  clamped to ``max_torque``);
* serves ``<robot>/enable`` (std_srvs/SetBool; starts disarmed, disarmed applies zero
  torque) and ``<robot>/reset`` (std_srvs/Trigger; joints to the start of the desired
  foot path, ``inverse_kinematics(desired_foot_position(0))``, at rest).

With ``lockstep`` each command advances the simulation exactly one physics step and then
publishes the new state and clock, so training runs as fast as the agent. Without it a
timer steps at ``physics_rate_hz`` holding the latest command. A command with the wrong
length or a NaN/inf is rejected, counted and logged, and that step applies zero torque.
Topic names are relative (``/leg/...`` in the root namespace); ``/clock`` is absolute.
Parameters: ``config/sim_bridge.yaml``.
"""

import numpy as np
from numpy.typing import NDArray
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from .graph_topics import (CLOCK_TOPIC, EFFORT_COMMANDS_TOPIC, ENABLE_SERVICE, JOINT_STATES_TOPIC, RESET_SERVICE,
                           ROBOT_QOS)
from .node_main import run_node
from .node_parameters import AT_LEAST_1, Param, declare_parameters, one_of, within
from .tasks.foot_path import desired_foot_position
from .tasks.leg_kinematics import inverse_kinematics
from .tasks.leg_simulation import STALL_TORQUE_NM, LegSimulation
from .tasks.leg_task import JOINT_NAMES

NODE_NAME = "sim_bridge"
SIMULATED_ROBOTS = ("leg",)
NS_PER_S = 1_000_000_000

PARAMETERS = {
    "robot": Param(str, "Simulated robot and topic prefix (<robot>/joint_states, ...).", one_of(*SIMULATED_ROBOTS)),
    "physics_rate_hz": Param(int, "Physics steps per simulated second (time step 1/rate); also the timer rate "
                             "when lockstep is false.", AT_LEAST_1),
    "lockstep": Param(bool, "true: each effort command advances exactly one physics step, then the state and "
                      "/clock are published. false: a wall-clock timer steps at physics_rate_hz holding the latest "
                      "command."),
    "max_torque": Param(float, "Commanded joint torques are clamped to +-max_torque [N*m]; at most the stall torque.",
                        within(0.0, STALL_TORQUE_NM)),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected effort commands "
                                 "(all are counted)."),
}


def start_joint_angles() -> NDArray[np.float64]:
    """Joint angles (hip, knee) [rad] that put the foot at the start of the desired path (phase 0)."""
    return inverse_kinematics(desired_foot_position(0.0))


class SimBridgeNode(Node):
    """The 2R leg in PyBullet as a ROS 2 node; ``rejected_commands`` counts refused commands."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        params = declare_parameters(self, NODE_NAME, PARAMETERS)
        robot = params["robot"]
        self._rate_hz = params["physics_rate_hz"]
        self._lockstep = params["lockstep"]
        self._reject_log_period_s = params["reject_log_period_s"]
        self._sim = LegSimulation(timestep_s=1.0 / self._rate_hz, torque_limit_nm=params["max_torque"])
        self._sim.reset(start_joint_angles())
        self._zero = np.zeros(len(JOINT_NAMES))
        self._armed = False
        self._held = self._zero  # latest valid command (zero-order hold when not in lockstep)
        self._applied = self._zero
        self.rejected_commands = 0

        self._state_pub = self.create_publisher(JointState, f"{robot}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, ROBOT_QOS)
        self._command_sub = self.create_subscription(
            Float64MultiArray, f"{robot}/{EFFORT_COMMANDS_TOPIC}", self._on_command, ROBOT_QOS
        )
        enable = self.create_service(SetBool, f"{robot}/{ENABLE_SERVICE}", self._on_enable)
        self.create_service(Trigger, f"{robot}/{RESET_SERVICE}", self._on_reset)
        if not self._lockstep:
            self.create_timer(1.0 / self._rate_hz, self._on_timer)
        self._publish()
        self.get_logger().info(
            f"simulating {robot!r} at {self._rate_hz} Hz, {'lockstep' if self._lockstep else 'wall-clock timer'}, "
            f"torques clamped to {params['max_torque']} N*m; disarmed until {enable.service_name} is called with true"
        )

    @property
    def armed(self) -> bool:
        """Whether effort commands are applied (else zero torque)."""
        return self._armed

    def destroy_node(self) -> None:
        super().destroy_node()
        if hasattr(self, "_sim"):  # absent when the constructor refused its parameters
            self._sim.close()

    def _on_command(self, msg: Float64MultiArray) -> None:
        torque = self._validated(msg)
        if self._lockstep:
            self._step(torque)
        else:
            self._held = torque

    def _on_timer(self) -> None:
        self._step(self._held)

    def _validated(self, msg: Float64MultiArray) -> NDArray[np.float64]:
        """The commanded torques, or zeros (counted and logged) if the command is malformed."""
        torque = np.asarray(msg.data, dtype=np.float64)
        if torque.shape == self._zero.shape and np.all(np.isfinite(torque)):
            return torque
        self.rejected_commands += 1
        if torque.shape != self._zero.shape:
            problem = f"has {torque.size} values, expected {len(JOINT_NAMES)}"
            fix = f"publish data=[{', '.join(JOINT_NAMES)}] torques in N*m"
        else:
            problem = "contains NaN or inf"
            fix = "check the policy output for NaN/inf before publishing"
        self.get_logger().warning(
            f"rejected effort command {torque.tolist()} on {self._command_sub.topic_name}: {problem}; "
            f"applying zero torque ({self.rejected_commands} rejected so far). Fix: {fix}.",
            throttle_duration_sec=self._reject_log_period_s,
        )
        return self._zero

    def _step(self, torque: NDArray[np.float64]) -> None:
        self._applied = self._sim.step(torque if self._armed else self._zero)
        self._publish()

    def _publish(self) -> None:
        stamp = Time(nanoseconds=self._sim.steps * NS_PER_S // self._rate_hz).to_msg()
        q, qdot = self._sim.joint_state()
        state = JointState(name=list(JOINT_NAMES), position=q.tolist(), velocity=qdot.tolist())
        state.effort = self._applied.tolist()
        state.header.stamp = stamp
        self._state_pub.publish(state)
        self._clock_pub.publish(Clock(clock=stamp))

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._armed = request.data
        self._held = self._zero  # never resume an old command on re-arming
        response.success = True
        response.message = "armed: effort commands are applied" if self._armed else "disarmed: zero torque"
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        q0 = start_joint_angles()
        self._sim.reset(q0)
        self._held = self._applied = self._zero
        self._publish()
        response.success = True
        response.message = f"joints at the start of the desired foot path, q = {np.round(q0, 4).tolist()} rad, at rest"
        return response


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run stochlite_bringup sim_bridge_node``."""
    return run_node(SimBridgeNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
