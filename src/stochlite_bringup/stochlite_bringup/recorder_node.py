"""``recorder_node``: the graph's topics into one MCAP file in the rosbag2 format (``RawTopicsNode``).

Messages keep their CDR bytes, with schema encoding ``ros2msg`` (``message_definitions``) and message
encoding ``cdr`` in zstd-compressed chunks, as rosbag2 writes MCAP, so ``ros2 bag info``, Foxglove and
``mcap_ros2`` read the file. The file is finished (summary and index) when the node stops.
Parameters: ``config/recorder.yaml``.
"""
from __future__ import annotations

from pathlib import Path

from mcap.writer import CompressionType, Writer

from .node_main import run_node
from .node_parameters import Param, declare_parameters
from .raw_topics import TOPIC_PARAMETERS, RawTopicsNode

NODE_NAME = "recorder"

PARAMETERS = {
    **TOPIC_PARAMETERS,
    "output": Param(str, "the MCAP file to write (its directory is created; an existing file is replaced)"),
}


class RecorderNode(RawTopicsNode):
    """Records the configured topics into ``output``."""

    def __init__(self, **node_kwargs) -> None:
        self._writer: Writer | None = None  # destroy_node finishes it only if the constructor got that far
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        self.output = Path(p["output"])
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._stream = self.output.open("wb")
        self._writer = Writer(self._stream, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="mdemorl recorder_node")
        self.get_logger().info(f"recording {len(p['topics'])} topics into {self.output}")
        self.start_topics(p, "recorded")

    def open_channel(self, topic: str, type_name: str, definition: bytes) -> int:
        return self._writer.register_channel(topic, "cdr", self._writer.register_schema(type_name, "ros2msg",
                                                                                         definition))

    def send(self, channel: int, data: bytes, now_ns: int, sequence: int) -> None:
        self._writer.add_message(channel, log_time=now_ns, data=data, publish_time=now_ns, sequence=sequence)

    def destroy_node(self) -> None:
        if self._writer is not None:
            self._writer.finish()
            self._stream.close()
            self.get_logger().info(f"{self.output}: {sum(self.passed.values())} messages")
        super().destroy_node()

    def diagnostics_values(self) -> dict[str, object]:
        return {"file": str(self.output), "file_bytes": self._stream.tell()}


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run stochlite_bringup recorder_node``."""
    return run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
