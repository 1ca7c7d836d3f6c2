"""``stochlite_estimator_node``: StochLite's ``/stochlite/task_step`` and ``/stochlite/torso_rpy`` on hardware.

A thin ROS shell over :class:`~leg_driver.stochlite_estimator.StochliteEstimator`: for every
``/stochlite/joint_states`` whose ``/stochlite/imu`` (same stamp) has arrived, publishes the env's
14-value observation, the reward and ``terminated`` as mdemorl_msgs/TaskStep (stamp = the joint
state's) and the IMU's roll, pitch, yaw. ``/stochlite/episode_start`` (published by the driver after a
successful reset) restarts the step count and the gait phase. The slope is the operator's statement
(parameters ``slope_roll_deg``, ``slope_pitch_deg``). Parameters: ``config/stochlite_estimator.yaml``.
"""
from __future__ import annotations

from geometry_msgs.msg import Vector3, Vector3Stamped
from mdemorl_msgs.msg import TaskStep
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Header
from stochlite_bringup.graph_topics import (IMU_TOPIC, JOINT_STATES_TOPIC, LATEST_MESSAGE_QOS, ROBOT_QOS,
                                            TASK_STEP_TOPIC, TORSO_RPY_TOPIC)
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import Param, declare_parameters, within
from stochlite_bringup.tasks.stochlite_simulation import JOINT_NAMES, MAX_SLOPE_DEG

from .stochlite_estimator import StochliteEstimator
from .stochlite_hw_node import EPISODE_START_TOPIC, NAMESPACE

NODE_NAME = "stochlite_estimator"
IMU_BACKLOG = 16

PARAMETERS = {
    "slope_roll_deg": Param(float, "Roll of the ground the robot stands on [deg], as the operator measured it.",
                            within(-MAX_SLOPE_DEG, MAX_SLOPE_DEG)),
    "slope_pitch_deg": Param(float, "Pitch of the ground [deg] (< 0: the ground rises ahead).",
                             within(-MAX_SLOPE_DEG, MAX_SLOPE_DEG)),
}


class StochliteEstimatorNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        self.estimator = StochliteEstimator(p["slope_roll_deg"], p["slope_pitch_deg"])
        self._imu: dict[int, Imu] = {}
        self._step = 0
        self._task_pub = self.create_publisher(TaskStep, f"{NAMESPACE}/{TASK_STEP_TOPIC}", ROBOT_QOS)
        self._rpy_pub = self.create_publisher(Vector3Stamped, f"{NAMESPACE}/{TORSO_RPY_TOPIC}", ROBOT_QOS)
        self.create_subscription(Imu, f"{NAMESPACE}/{IMU_TOPIC}", self._on_imu, ROBOT_QOS)
        self.create_subscription(JointState, f"{NAMESPACE}/{JOINT_STATES_TOPIC}", self._on_joint_state, ROBOT_QOS)
        self.create_subscription(Header, f"{NAMESPACE}/{EPISODE_START_TOPIC}", self._on_episode_start,
                                 LATEST_MESSAGE_QOS)
        self.get_logger().info(f"estimating the task state on a slope of roll {p['slope_roll_deg']} deg, pitch "
                               f"{p['slope_pitch_deg']} deg")

    def _on_imu(self, msg: Imu) -> None:
        self._imu[Time.from_msg(msg.header.stamp).nanoseconds] = msg
        while len(self._imu) > IMU_BACKLOG:
            del self._imu[next(iter(self._imu))]

    def _on_episode_start(self, _msg: Header) -> None:
        self.estimator.reset()
        self._step = 0

    def _on_joint_state(self, msg: JointState) -> None:
        if list(msg.name) != list(JOINT_NAMES):
            self.get_logger().error(f"ignoring joint_states of joints {list(msg.name)}: expected {list(JOINT_NAMES)}",
                                    throttle_duration_sec=1.0)
            return
        imu = self._imu.pop(Time.from_msg(msg.header.stamp).nanoseconds, None)
        if imu is None:
            return  # its IMU sample is late or lost: this step is skipped
        o, w = imu.orientation, imu.angular_velocity
        estimate = self.estimator.update(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9, msg.position,
                                         msg.velocity, msg.effort, (o.x, o.y, o.z, o.w), (w.x, w.y, w.z))
        task = TaskStep(step=self._step, observation=estimate.observation.tolist(),
                        reward=estimate.reward if self._step else 0.0, terminated=estimate.terminated)
        task.header = msg.header
        self._task_pub.publish(task)
        self._step += 1
        roll, pitch, yaw = (float(v) for v in estimate.observation[:3])
        rpy = Vector3Stamped(vector=Vector3(x=roll, y=pitch, z=yaw))
        rpy.header.stamp, rpy.header.frame_id = msg.header.stamp, "base"
        self._rpy_pub.publish(rpy)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run leg_driver stochlite_estimator_node``."""
    return run_node(StochliteEstimatorNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
