"""``foxglove_bridge_node``: the graph's topics served live to Foxglove over WebSocket (``RawTopicsNode``).

Runs a Foxglove WebSocket server (the ``foxglove-sdk`` package) on ``host``:``port`` and advertises one
channel per topic with its ros2msg definition and CDR encoding, so a user without a ROS install opens
Foxglove, connects to ``ws://127.0.0.1:8765`` and plots /mdemorl/status or watches the joint states.
Started by ``foxglove:=true``. Parameters: ``config/foxglove_bridge.yaml``.
"""
from __future__ import annotations

import foxglove

from .node_main import run_node
from .node_parameters import Param, declare_parameters, within
from .raw_topics import TOPIC_PARAMETERS, RawTopicsNode

NODE_NAME = "foxglove_bridge"

PARAMETERS = {
    **TOPIC_PARAMETERS,
    "host": Param(str, "address the WebSocket server listens on (127.0.0.1: this machine only)"),
    "port": Param(int, "TCP port of the WebSocket server (0: any free port, logged)", within(0, 65535)),
}


class FoxgloveBridgeNode(RawTopicsNode):
    """Serves the configured topics; ``server.port`` is the port actually bound."""

    def __init__(self, **node_kwargs) -> None:
        self.server = None  # destroy_node stops it only if the constructor got that far
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        self._foxglove = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="mdemorl", host=p["host"], port=p["port"],
                                                context=self._foxglove)
        except RuntimeError as error:
            raise ValueError(f"cannot serve on {p['host']}:{p['port']} ({error}); pass -p port:=<free port>") \
                from None
        self.url = f"ws://{p['host']}:{self.server.port}"
        self.get_logger().info(f"Foxglove: connect to {self.url}")
        self.start_topics(p, "served")

    def open_channel(self, topic: str, type_name: str, definition: bytes) -> foxglove.Channel:
        schema = foxglove.Schema(name=type_name, encoding="ros2msg", data=definition)
        return foxglove.Channel(topic, schema=schema, message_encoding="cdr", context=self._foxglove)

    def send(self, channel: foxglove.Channel, data: bytes, now_ns: int, sequence: int) -> None:
        channel.log(data, log_time=now_ns)

    def destroy_node(self) -> None:
        if self.server is not None:
            self.server.stop()
        super().destroy_node()

    def diagnostics_values(self) -> dict[str, object]:
        return {"url": self.url}


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run stochlite_bringup foxglove_bridge_node``."""
    return run_node(FoxgloveBridgeNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
