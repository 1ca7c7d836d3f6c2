"""foxglove_bridge_node over real DDS and a real WebSocket: a client without ROS gets the graph's messages."""
import json
import os
import struct
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from websockets.sync.client import connect

from stochlite_bringup.foxglove_bridge_node import FoxgloveBridgeNode

DOMAIN_ID = 20 + os.getpid() % 30
TOPIC = f"/foxglove_test_{os.getpid()}/joint_states"  # no other graph on this machine publishes it
MESSAGE_DATA = 0x01  # the server's binary opcode for a message (foxglove.sdk.v1)


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
            channel = None
            deadline = time.monotonic() + 10
            while channel is None and time.monotonic() < deadline:
                frame = ws.recv(timeout=10)
                if isinstance(frame, str) and json.loads(frame)["op"] == "advertise":
                    channel = next((c for c in json.loads(frame)["channels"] if c["topic"] == TOPIC), None)
            assert channel is not None, f"{TOPIC} was never advertised"
            assert (channel["encoding"], channel["schemaName"], channel["schemaEncoding"]) == (
                "cdr", "sensor_msgs/msg/JointState", "ros2msg")
            assert "MSG: std_msgs/Header" in channel["schema"]
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channel["id"]}]}))
            received = []
            while len(received) < 3:
                frame = ws.recv(timeout=10)
                if isinstance(frame, bytes) and frame[0] == MESSAGE_DATA:
                    subscription, _log_time = struct.unpack_from("<IQ", frame, 1)
                    assert subscription == 7
                    received.append(deserialize_message(frame[13:], JointState))
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
