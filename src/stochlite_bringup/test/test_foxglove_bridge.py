"""foxglove_bridge_node over real DDS and a real WebSocket: a client without ROS gets the graph's messages."""
import json
import os
import struct
import threading
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from websockets.sync.client import connect

from stochlite_bringup.foxglove_bridge_node import FoxgloveBridgeNode

pytestmark = pytest.mark.integration

DOMAIN_ID = 20 + os.getpid() % 30
TOPIC = f"/foxglove_test_{os.getpid()}/joint_states"  # no other graph on this machine publishes it
MESSAGE_DATA = 0x01  # the server's binary opcode for a message (foxglove.sdk.v1)


def receive(ws, count: int, timeout_s: float = 20.0) -> tuple[list[JointState], dict, int]:
    """What a Foxglove client does: subscribe to TOPIC's advertised channel (again if it is re-advertised)
    and collect ``count`` of its messages. Returns them, the channel and the subscription id."""
    received, channel, subscription = [], None, 0
    deadline = time.monotonic() + timeout_s
    while len(received) < count:
        assert time.monotonic() < deadline, f"{len(received)} of {count} messages on {TOPIC}; channel {channel}"
        frame = ws.recv(timeout=timeout_s)
        if isinstance(frame, bytes):
            sub, _log_time = struct.unpack_from("<IQ", frame, 1)
            if frame[0] == MESSAGE_DATA and sub == subscription:
                received.append(deserialize_message(frame[13:], JointState))
            continue
        message = json.loads(frame)
        retry = message["op"] == "status" and "unknown channel" in message["message"].lower()
        if retry:  # foxglove-sdk 0.30 can advertise a channel a moment before it accepts subscriptions to it
            time.sleep(0.2)
        ours = [c for c in message.get("channels", []) if c["topic"] == TOPIC] if message["op"] == "advertise" else []
        if ours or (retry and channel is not None):
            channel, subscription = (ours[0] if ours else channel), subscription + 1
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": subscription, "channelId": channel["id"]}]}))
    return received, channel, subscription


def test_a_websocket_client_is_advertised_the_topic_and_receives_its_cdr_messages():
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    bridge = FoxgloveBridgeNode(context=context, parameter_overrides=[
        Parameter("port", value=0), Parameter("topics", value=[TOPIC, "/not/published"]),
        Parameter("max_rate_hz", value=[0.0, 0.0]), Parameter("discovery_period_s", value=0.2)])
    robot = rclpy.create_node("fake_leg", context=context)
    publisher = robot.create_publisher(JointState, TOPIC, 10)
    sent = []

    def publish() -> None:
        msg = JointState(name=["hip", "knee"], position=[0.1, float(len(sent))], velocity=[0.0, 0.0])
        sent.append(msg)
        publisher.publish(msg)

    robot.create_timer(0.05, publish)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(bridge)
    executor.add_node(robot)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
    spinner.start()
    try:
        with connect(f"ws://127.0.0.1:{bridge.server.port}", subprotocols=["foxglove.sdk.v1"],
                     open_timeout=10) as ws:
            received, channel, subscription = receive(ws, count=3)
        assert (channel["encoding"], channel["schemaName"], channel["schemaEncoding"]) == (
            "cdr", "sensor_msgs/msg/JointState", "ros2msg")
        assert "MSG: std_msgs/Header" in channel["schema"]
        assert all(list(m.name) == ["hip", "knee"] and m.position[0] == 0.1 for m in received)
        counters = [m.position[1] for m in received]
        assert counters == sorted(counters) and counters[-1] < len(sent)  # in order, as published
        assert bridge.passed[TOPIC] >= 3 and "/not/published" not in bridge.unavailable
    finally:
        stop.set()
        spinner.join(5)
        executor.shutdown()
        bridge.destroy_node()
        robot.destroy_node()
        rclpy.try_shutdown(context=context)
