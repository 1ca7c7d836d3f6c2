"""``run_node``: the ``main()`` of every node of the graph.

SIGINT and SIGTERM only set a flag, checked between callbacks (rclpy's own handlers are off): a
signal at any moment, even during start-up, cannot surface as an exception inside rclpy. A node
may also end its run itself with an exit code (:class:`FinishingNode`).
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from .node_worker import Worker

SIGNAL_POLL_S = 0.1  # longest wait in the spin loop before a signal is noticed


@runtime_checkable
class FinishingNode(Protocol):
    """A node that ends its run itself: ``exit_code`` stays None until it has stopped.

    On the first SIGINT/SIGTERM the spin loop calls ``request_stop()`` outside any callback, so the
    node can still talk to the graph (the agent disarms the robot) before it sets ``exit_code``.
    """

    exit_code: int | None

    def request_stop(self) -> None: ...


def run_node(node_factory: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Build the node, spin it on a single-threaded executor and return the process's exit code.

    0 after SIGINT or SIGTERM; a :class:`FinishingNode` is asked to stop and spun until it sets
    ``exit_code`` (which is returned; a second signal ends the spin at once, exit 0). 1 if the node
    rejects its configuration (ValueError or a parameter error while it is built, logged as fatal).
    If a :class:`Worker` is still inside torch at the end, the process ends at once with the code:
    interpreter finalisation would abort it ("terminate called without an active exception"), so a
    fit cut short by the signal must not reach it.
    """
    signals: list[int] = []
    handlers = {sig: signal.signal(sig, lambda signum, _frame: signals.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        code = _spin(executor, node, signals)
        executor.shutdown()
    except (ValueError, ParameterException) as error:
        if node is not None:
            raise  # raised by a callback: a bug, not a configuration error
        get_logger(name).fatal(f"cannot start: {error}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if any(worker.alive for worker in Worker.instances):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _spin(executor: SingleThreadedExecutor, node: Node, signals: list[int]) -> int:
    """Spin until a signal ends the run or the node finishes it; return the exit code."""
    if not isinstance(node, FinishingNode):
        while not signals:
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
        return 0
    stop_requested = False
    while node.exit_code is None and len(signals) < 2:
        if signals and not stop_requested:
            stop_requested = True
            node.request_stop()
        else:
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    return 0 if node.exit_code is None else node.exit_code
