"""What the robot side of the graph publishes about its episodes, for every host of the policy runner (the
agent node; the leg's hardware interface): D_ENV batches on ``/mdemorl/transitions/env``, training and evaluation
returns, an evaluation's foot path (``<ns>/foot_path`` and ``foot_path_desired`` markers, and
``run_dir/foot_path.npz`` for the launcher's plot), and StochLite's decoded gait commands. Imports no torch.
"""
from __future__ import annotations

from pathlib import Path

from geometry_msgs.msg import Point
from mdemorl_msgs.msg import TransitionBatch
from mdemorl_planner.messages import batch_to_msg
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, Float64, Float64MultiArray, MultiArrayDimension, MultiArrayLayout
from stochlite_bringup.graph_topics import (ENV_TOPIC, EVAL_RETURN_TOPIC, MARKER_QOS, POLICY_TOPIC, RETURNS_QOS,
                                            TRAIN_RETURN_TOPIC, TRANSITIONS_QOS)
from visualization_msgs.msg import Marker

from .policy_runner import Batch, EpisodeEnd, save_foot_path

FOOT_PATH_FILE = "foot_path.npz"  # in run_dir: the last evaluation's foot path, for the launcher's plot
MARKER_WIDTH_M = 0.004
DELIVERY_TIMEOUT_S = 10.0  # at the end, how long to wait for the learner to acknowledge the last messages
FOOT_COLOR = ColorRGBA(r=0.1, g=0.4, b=1.0, a=1.0)
DESIRED_COLOR = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
GAIT_LAYOUT = MultiArrayLayout(dim=[  # /stochlite/gait_command: 4 legs x (x, y, z) shift [m], then the step length
    MultiArrayDimension(label="fl_fr_bl_br_x_y_z_shift_m", size=12, stride=13),
    MultiArrayDimension(label="step_length_m", size=1, stride=1)])


def gait_message(gait) -> Float64MultiArray:
    """StochLite's ``gait_command`` of a :class:`~stochlite_bringup.tasks.stochlite_gait.GaitCommand`."""
    return Float64MultiArray(layout=GAIT_LAYOUT, data=[*gait.shifts.ravel().tolist(), gait.step_length_m])


class EpisodeReporter:
    """Publishers of ``node`` for the episodes of the robot under namespace ``ns``."""

    def __init__(self, node: Node, ns: str, marker_frame: str, run_dir: str) -> None:
        self._node = node
        self._marker_frame = marker_frame
        self._run_dir = run_dir
        self.env_pub = node.create_publisher(TransitionBatch, ENV_TOPIC, TRANSITIONS_QOS)
        self._eval_pub = node.create_publisher(Float64, EVAL_RETURN_TOPIC, RETURNS_QOS)
        self._train_pub = node.create_publisher(Float64, TRAIN_RETURN_TOPIC, RETURNS_QOS)
        self._foot_pub = node.create_publisher(Marker, f"{ns}/foot_path", MARKER_QOS)
        self._desired_pub = node.create_publisher(Marker, f"{ns}/foot_path_desired", MARKER_QOS)

    def learner_listening(self) -> bool:
        """A node that publishes policy snapshots (the learner) subscribes to the transitions, and they reach it:
        transitions published before would be lost (a volatile topic), and pacing would wait for updates on them."""
        node = self._node
        learners = {(i.node_name, i.node_namespace) for i in node.get_publishers_info_by_topic(POLICY_TOPIC)}
        readers = {(i.node_name, i.node_namespace) for i in node.get_subscriptions_info_by_topic(ENV_TOPIC)}
        return bool(learners & readers) and self.env_pub.get_subscription_count() > 0

    def publish_batches(self, batches: list[Batch]) -> None:
        for batch in batches:
            self.env_pub.publish(batch_to_msg(batch.data, "env", batch.policy_version,
                                              stamp=self._node.get_clock().now().to_msg()))

    def publish_end(self, end: EpisodeEnd) -> None:
        """The episode's return; an evaluation's foot path too (the leg's)."""
        if not end.evaluation:
            self._train_pub.publish(Float64(data=end.episode_return))
            return
        self._eval_pub.publish(Float64(data=end.episode_return))
        if len(end.foot):
            self._publish_foot_paths(end)
            self._save_foot_path(end)

    def await_delivery(self) -> None:
        """Wait until the subscribers acknowledged the last transitions and returns: the learner closes the
        final epoch on them, and a process that exits first can take unacknowledged messages with it."""
        for publisher in (self.env_pub, self._eval_pub, self._train_pub):
            if not publisher.wait_for_all_acked(Duration(seconds=DELIVERY_TIMEOUT_S)):
                self._node.get_logger().warning(f"{publisher.topic_name}: not acknowledged within "
                                                f"{DELIVERY_TIMEOUT_S} s; the learner may miss the last messages")

    def _publish_foot_paths(self, end: EpisodeEnd) -> None:
        stamp = self._node.get_clock().now().to_msg()
        for publisher, path, color in ((self._foot_pub, end.foot, FOOT_COLOR),
                                       (self._desired_pub, end.foot_desired, DESIRED_COLOR)):
            marker = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns=publisher.topic_name, color=color)
            marker.header.frame_id = self._marker_frame
            marker.header.stamp = stamp
            marker.pose.orientation.w = 1.0
            marker.scale.x = MARKER_WIDTH_M
            marker.points = [Point(x=float(x), y=0.0, z=float(z)) for x, z in path]
            publisher.publish(marker)

    def _save_foot_path(self, end: EpisodeEnd) -> None:
        if not self._run_dir:
            return
        path = Path(self._run_dir) / FOOT_PATH_FILE
        try:
            save_foot_path(path, end)
        except OSError as error:
            self._node.get_logger().warning(f"foot path not written to {path}: {error}")
