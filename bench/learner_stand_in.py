"""What the graph benchmarks put in the learner's place, so that an agent node runs a real policy without one."""
from __future__ import annotations

import threading
from collections.abc import Callable

import rclpy
from mdemorl_msgs.msg import Snapshot, TransitionBatch
from mdemorl_planner.messages import snapshot_to_msg, state_dict_to_bytes
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ
from mdemorl_planner.snapshots import policy_payload
from rclpy.node import Node
from stochlite_bringup.graph_topics import ENV_TOPIC, POLICY_TOPIC, SNAPSHOT_QOS, TRANSITIONS_QOS
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM

HIDDEN, LAYERS = 256, 2  # the learner's default actor, so each command is a real 2x256 forward pass


def stand_in_for_the_learner(node: Node) -> None:
    """On ``node``: publish an untrained leg policy (latched) and take the agent's transitions; the agent arms
    the robot once the publisher of policies subscribes to them."""
    policy = node.create_publisher(Snapshot, POLICY_TOPIC, SNAPSHOT_QOS)
    node.create_subscription(TransitionBatch, ENV_TOPIC, lambda _m: None, TRANSITIONS_QOS)
    actor, critic = SquashedGaussianActor(OBS_DIM, ACT_DIM, HIDDEN, LAYERS), TwinQ(OBS_DIM, ACT_DIM, HIDDEN, LAYERS)
    policy.publish(snapshot_to_msg("policy", 1, state_dict_to_bytes(
        policy_payload(actor, critic, OBS_DIM, ACT_DIM, HIDDEN, LAYERS))))


def spin_in_background(node: Node) -> Callable[[], None]:
    """Spin ``node`` on a daemon thread; the returned function stops the spinning and waits for the thread."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def stop_spinning() -> None:
        stop.set()
        thread.join()
    return stop_spinning
