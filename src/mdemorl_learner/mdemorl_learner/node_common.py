"""What the learner package's nodes share: typed read-only parameters, their checks, and ``main()``.

``run_until_done`` is the ``main()`` of nodes that end their run themselves: a node given to it
has ``exit_code`` (None while running) and ``request_stop()``. SIGINT and SIGTERM are only
counted; the spin loop then calls ``request_stop()`` outside any callback, so the node can still
talk to the graph (the agent disarms the robot) before it sets ``exit_code``.
"""

import signal
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SPIN_PERIOD_S = 0.1  # upper bound on the reaction time to a signal


def described(kind: int, description: str) -> ParameterDescriptor:
    """A read-only parameter of type ``kind`` (a ``ParameterType`` constant)."""
    return ParameterDescriptor(type=kind, description=description, read_only=True)


def check_parameters(values: dict, rules: dict[str, tuple[bool, str]], config_file: str) -> dict:
    """``values`` if every rule ``name: (holds, wording)`` holds; else ValueError naming it and the fix."""
    for name, (holds, wording) in rules.items():
        if not holds:
            raise ValueError(f"parameter '{name}' is {values[name]!r} but must be {wording}; fix it in "
                             f"stochlite_bringup/config/{config_file} or pass -p {name}:=<value>")
    return values


def run_until_done(node_factory: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Spin the node on a single-threaded executor until it sets ``exit_code``; return that code.

    A configuration error (ValueError or a parameter error while constructing) is logged as
    fatal and returns 1. A second SIGINT/SIGTERM ends the spin at once (exit 0).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        try:
            node = node_factory()
        except (ValueError, ParameterException) as error:
            get_logger(name).fatal(f"cannot start: {error}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop_requested = False
        while node.exit_code is None and len(received) < 2:
            if received and not stop_requested:
                stop_requested = True
                node.request_stop()
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        executor.shutdown()
        return node.exit_code if node.exit_code is not None else 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
