"""``RawTopicsNode``: a node that passes chosen topics on as raw CDR bytes, at a bounded rate per topic.

Subscribes to each topic as soon as a publisher shows its type (looked up every ``discovery_period_s``),
with ``raw=True``: nothing is deserialised. Latched topics (transient-local publishers: snapshots,
markers) are subscribed transient-local, so their last message arrives too. ``max_rate_hz`` thins a topic
(500 Hz joint states at 50 Hz keep about one message in ten); 0 passes every message. Subclasses open a
channel per topic (given its type and ros2msg definition) and send the bytes on: the MCAP recorder and
the Foxglove bridge.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .graph_topics import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC
from .message_definitions import message_definition
from .node_diagnostics import diagnostics_message
from .node_parameters import POSITIVE, Param, one_of, parameter_error
from .task_names import TASK_NAMES, robot_namespace

NS_PER_S = 1_000_000_000
SUBSCRIPTION_DEPTH = 100
UNAVAILABLE = object()  # the channel of a topic whose definition could not be found

TOPIC_PARAMETERS = {
    "robot": Param(str, "robot whose namespace prefixes the relative topic names", one_of(*TASK_NAMES)),
    "topics": Param(list[str], "topics to pass on; names without a leading / are under the robot's namespace"),
    "max_rate_hz": Param(list[float], "highest rate per topic, in the order of topics; 0 passes every message"),
    "discovery_period_s": Param(float, "seconds between two looks for the types of topics not yet subscribed",
                                POSITIVE),
    "diagnostics_period_s": Param(float, "seconds between two /diagnostics messages", POSITIVE),
}


class RawTopicsNode(Node):
    """Passes ``topics`` on; ``passed`` and ``thinned`` count messages per topic (absolute names)."""

    def start_topics(self, params: dict, verb: str) -> None:
        """Begin discovery and diagnostics with the :data:`TOPIC_PARAMETERS` values; call at the end of
        ``__init__``. ``verb`` names what happens to the messages in /diagnostics (recorded, served)."""
        robot, topics, max_rate_hz = params["robot"], params["topics"], params["max_rate_hz"]
        if len(max_rate_hz) != len(topics) or any(rate < 0 for rate in max_rate_hz):
            raise parameter_error(self.get_name(), "max_rate_hz", f"is {max_rate_hz} but must hold one rate >= 0 "
                                  f"per topic ({len(topics)} topics)")
        self._verb = verb
        ns = robot_namespace(robot)
        names = [t if t.startswith("/") else f"/{ns}/{t}" for t in topics]
        self._min_gap_ns = {name: round(NS_PER_S / rate) if rate > 0 else 0 for name, rate in zip(names, max_rate_hz)}
        self._channels: dict[str, object] = {}
        self._last_ns: dict[str, int] = {}
        self.passed = {name: 0 for name in names}
        self.thinned = {name: 0 for name in names}
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_timer(params["discovery_period_s"], self._discover)
        self.create_timer(params["diagnostics_period_s"], self._publish_diagnostics)
        self._discover()

    @property
    def unavailable(self) -> list[str]:
        """Topics whose type has no installed definition."""
        return [name for name, channel in self._channels.items() if channel is UNAVAILABLE]

    def open_channel(self, topic: str, type_name: str, definition: bytes) -> object:
        raise NotImplementedError

    def diagnostics_values(self) -> dict[str, object]:
        """What the subclass adds to its /diagnostics (the file, the URL)."""
        return {}

    def send(self, channel: object, data: bytes, now_ns: int, sequence: int) -> None:
        raise NotImplementedError

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for name in self.passed:
            if name in self._channels or name not in types:
                continue
            type_name = types[name][0]
            try:
                definition = message_definition(type_name).encode()
            except ValueError as error:
                self.get_logger().warning(f"cannot pass on {name}: {error}")
                self._channels[name] = UNAVAILABLE
                continue
            self._channels[name] = self.open_channel(name, type_name, definition)
            self.create_subscription(_message_class(type_name), name,
                                     lambda data, topic=name: self._on_message(topic, data), self._qos(name), raw=True)

    def _qos(self, name: str) -> QoSProfile:
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
        self.send(self._channels[topic], data, now, self.passed[topic])
        self.passed[topic] += 1


    def _publish_diagnostics(self) -> None:
        values = {f"{self._verb} {name}": count for name, count in self.passed.items()}
        values.update(self.diagnostics_values())
        problem = f"not {self._verb}: {', '.join(self.unavailable)}" if self.unavailable else ""
        self._diagnostics_pub.publish(diagnostics_message(self, values, problem))


def _message_class(type_name: str):
    """The Python class of ``pkg/msg/Type``."""
    package, _, name = type_name.split("/")
    return getattr(__import__(f"{package}.msg", fromlist=[name]), name)
