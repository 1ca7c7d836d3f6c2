"""How the graph's nodes report: their /diagnostics message and the throttle of repeated warnings."""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

LOG_THROTTLE_S = 5.0  # least time between two warnings of the same kind (all cases are counted)


def diagnostics_message(node: Node, values: dict[str, object], problem: str = "",
                        level: bytes | None = None) -> DiagnosticArray:
    """One DiagnosticStatus named after the node: OK, or WARN with ``problem``; ``level`` overrides the level."""
    if level is None:
        level = DiagnosticStatus.WARN if problem else DiagnosticStatus.OK
    status = DiagnosticStatus(name=node.get_name(), hardware_id=node.get_fully_qualified_name(), level=level,
                              message=problem or "ok",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg
