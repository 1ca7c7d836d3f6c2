"""``recorder_node``: the graph's topics into one MCAP file in the rosbag2 format, at a bounded rate per topic.

Subscribes to each configured topic as soon as a publisher shows its type (looked up every
``discovery_period_s``), as raw CDR bytes: nothing is deserialised. Messages are written with schema
encoding ``ros2msg`` (``message_definitions``) and message encoding ``cdr`` in zstd-compressed chunks, as
rosbag2 writes MCAP, so ``ros2 bag info``, Foxglove and ``mcap_ros2`` read the file. ``max_rate_hz`` thins
a topic (500 Hz joint states at 50 Hz keep about one message in ten); 0 records every message. The file is
finished (summary and index) when the node stops. Parameters: ``config/recorder.yaml``.
"""
from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from mcap.writer import CompressionType, Writer
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .graph_topics import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC
from .message_definitions import message_definition
from .node_diagnostics import diagnostics_message
from .node_main import run_node
from .node_parameters import POSITIVE, Param, declare_parameters, one_of, parameter_error
from .task_names import TASK_NAMES, robot_namespace

NODE_NAME = "recorder"
NS_PER_S = 1_000_000_000
SUBSCRIPTION_DEPTH = 100

PARAMETERS = {
    "robot": Param(str, "robot whose namespace prefixes the relative topic names", one_of(*TASK_NAMES)),
    "output": Param(str, "the MCAP file to write (its directory is created; an existing file is replaced)"),
    "topics": Param(list[str], "topics to record; names without a leading / are under the robot's namespace"),
    "max_rate_hz": Param(list[float], "highest recorded rate per topic, in the order of topics; 0 records every "
                         "message"),
    "discovery_period_s": Param(float, "seconds between two looks for the types of topics not yet subscribed",
                                POSITIVE),
    "diagnostics_period_s": Param(float, "seconds between two /diagnostics messages", POSITIVE),
}


class RecorderNode(Node):
    """Records ``topics``; ``recorded`` and ``thinned`` count messages per topic."""

    def __init__(self, **node_kwargs) -> None:
        self._writer: Writer | None = None  # destroy_node finishes it only if the constructor got that far
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        if len(p["max_rate_hz"]) != len(p["topics"]) or any(rate < 0 for rate in p["max_rate_hz"]):
            raise parameter_error(NODE_NAME, "max_rate_hz", f"is {p['max_rate_hz']} but must hold one rate >= 0 "
                                  f"per topic ({len(p['topics'])} topics)")
        ns = robot_namespace(p["robot"])
        names = [t if t.startswith("/") else f"/{ns}/{t}" for t in p["topics"]]
        self._min_gap_ns = {name: round(NS_PER_S / rate) if rate > 0 else 0
                            for name, rate in zip(names, p["max_rate_hz"])}
        self._channels: dict[str, int] = {}
        self._last_ns: dict[str, int] = {}
        self.recorded = {name: 0 for name in names}
        self.thinned = {name: 0 for name in names}
        self.output = Path(p["output"])
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._stream = self.output.open("wb")
        self._writer = Writer(self._stream, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="mdemorl recorder_node")
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_timer(p["discovery_period_s"], self._discover)
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.get_logger().info(f"recording {len(names)} topics into {self.output}")
        self._discover()

    def destroy_node(self) -> None:
        if self._writer is not None:
            self._writer.finish()
            self._stream.close()
            self.get_logger().info(f"{self.output}: {sum(self.recorded.values())} messages")
        super().destroy_node()

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for name in self.recorded:
            if name in self._channels or name not in types:
                continue
            type_name = types[name][0]
            try:
                schema = self._writer.register_schema(type_name, "ros2msg", message_definition(type_name).encode())
            except ValueError as error:
                self.get_logger().warning(f"not recording {name}: {error}")
                self._channels[name] = -1
                continue
            self._channels[name] = self._writer.register_channel(name, "cdr", schema)
            message_class = _message_class(type_name)
            self.create_subscription(message_class, name, lambda data, topic=name: self._on_message(topic, data),
                                     self._qos(name), raw=True)

    def _qos(self, name: str) -> QoSProfile:
        """Reliable; transient-local if the publishers latch (snapshots, markers), so the last one is kept."""
        latched = any(info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                      for info in self.get_publishers_info_by_topic(name))
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SUBSCRIPTION_DEPTH,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _on_message(self, topic: str, data: bytes) -> None:
        now = self.get_clock().now().nanoseconds
        if now - self._last_ns.get(topic, -self._min_gap_ns[topic]) < self._min_gap_ns[topic]:
            self.thinned[topic] += 1
            return
        self._last_ns[topic] = now
        self._writer.add_message(self._channels[topic], log_time=now, data=data, publish_time=now,
                                 sequence=self.recorded[topic])
        self.recorded[topic] += 1

    def _publish_diagnostics(self) -> None:
        values = {f"recorded {name}": count for name, count in self.recorded.items()}
        values.update({"file": str(self.output), "file_bytes": self._stream.tell()})
        missing = [name for name, channel in self._channels.items() if channel < 0]
        problem = f"cannot record {', '.join(missing)}" if missing else ""
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))


def _message_class(type_name: str):
    """The Python class of ``pkg/msg/Type``."""
    package, _, name = type_name.split("/")
    module = __import__(f"{package}.msg", fromlist=[name])
    return getattr(module, name)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run stochlite_bringup recorder_node``."""
    return run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
