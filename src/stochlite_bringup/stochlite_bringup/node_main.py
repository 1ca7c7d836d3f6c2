"""``run_node``: the ``main()`` of every node: spin until SIGINT or SIGTERM, then shut down cleanly."""

from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node


def run_node(node_factory: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Build the node and spin it; return the exit code.

    0 after SIGINT or SIGTERM (rclpy's handlers shut the context down; no traceback),
    1 if the node rejects its configuration (ValueError or a parameter error, logged as fatal).
    """
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as error:
        if node is not None:
            raise  # raised by a callback: a bug, not a configuration error
        get_logger(name).fatal(f"cannot start: {error}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
