"""What the planner package's nodes share: topics and QoS, checked typed parameters, a background
worker, diagnostics and ``run``, their ``main`` that exits cleanly on SIGINT and SIGTERM."""
from __future__ import annotations

import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from stochlite_bringup.node_parameters import declare_parameters_from_config

ENV_TOPIC = "/mdemorl/transitions/env"
MPC_TOPIC = "/mdemorl/transitions/mpc"
POLICY_TOPIC = "/mdemorl/policy"
DYNAMICS_TOPIC = "/mdemorl/dynamics"
DIAGNOSTICS_TOPIC = "/diagnostics"

# Bursts of transitions must not be dropped; a late joiner gets the latest snapshot.
TRANSITIONS_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
SNAPSHOT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_QOS = 10
LOG_THROTTLE_S = 5.0
SIGNAL_POLL_S = 0.1  # longest wait in the spin loop before a signal is noticed


@dataclass(frozen=True)
class Rule:
    """A constraint on a parameter value, and its wording for the description and errors."""

    test: Callable[[Any], bool]
    text: str


AT_LEAST_1 = Rule(lambda v: v >= 1, ">= 1")
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")
POSITIVE = Rule(lambda v: v > 0, "> 0")
UNIT_OPEN_LOW = Rule(lambda v: 0 < v <= 1, "in (0, 1]")
UNIT_CLOSED = Rule(lambda v: 0 <= v <= 1, "in [0, 1]")
UNIT_OPEN_HIGH = Rule(lambda v: 0 <= v < 1, "in [0, 1)")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


_PARAMETER_TYPES = {int: ParameterType.PARAMETER_INTEGER, float: ParameterType.PARAMETER_DOUBLE,
                    str: ParameterType.PARAMETER_STRING}


@dataclass(frozen=True)
class Param:
    """A read-only node parameter: its type, description and rule (its default is in config/<node>.yaml)."""

    name: str
    type: type
    description: str
    rule: Rule

    def descriptor(self) -> ParameterDescriptor:
        return ParameterDescriptor(name=self.name, type=_PARAMETER_TYPES[self.type], read_only=True,
                                   description=self.description, additional_constraints=self.rule.text)


def parameter_error(node_name: str, name: str, problem: str) -> ValueError:
    """ValueError naming the parameter, what is wrong and where to fix it."""
    return ValueError(f"parameter '{name}' {problem}; fix it in stochlite_bringup/config/{node_name}.yaml "
                      f"or pass -p {name}:=<value>")


def declare_parameters(node: Node, node_name: str, params: tuple[Param, ...]) -> SimpleNamespace:
    """Declare ``params`` with their defaults from ``config/<node_name>.yaml``; return the checked values."""
    values = declare_parameters_from_config(node, f"{node_name}.yaml", node_name,
                                            {p.name: p.descriptor() for p in params})
    for p in params:
        if not p.rule.test(values[p.name]):
            raise parameter_error(node_name, p.name, f"is {values[p.name]!r} but must be {p.rule.text}")
    return SimpleNamespace(**values)


class Worker:
    """One background thread that runs ``job`` after each ``poke``; pokes during a run coalesce into one rerun.

    ``job`` decides itself whether there is work to do. An exception in it is logged, not fatal.
    """

    instances: weakref.WeakSet[Worker] = weakref.WeakSet()

    def __init__(self, job: Callable[[], None], node: Node) -> None:
        Worker.instances.add(self)
        self._job = job
        self._logger = node.get_logger()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=f"{node.get_name()}_worker", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        """Ask the thread to end and wait up to ``timeout_s`` (a running job is not interrupted)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            self.busy = True
            try:
                self._job()
            except Exception as exc:  # keep the node alive; the next poke retries
                self._logger.error(f"background job failed: {type(exc).__name__}: {exc}")
            finally:
                self.busy = False


def diagnostics_message(node: Node, values: dict[str, object], problem: str = "") -> DiagnosticArray:
    """One DiagnosticStatus named after the node: OK, or WARN with ``problem``."""
    status = DiagnosticStatus(name=node.get_name(), hardware_id=node.get_fully_qualified_name(),
                              level=DiagnosticStatus.WARN if problem else DiagnosticStatus.OK,
                              message=problem or "ok",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg



def run(node_factory: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """``main`` of a node: spin it until SIGINT or SIGTERM and return 0, or 1 if its configuration is invalid.

    The signals only set a flag, checked between callbacks (rclpy's own handlers are off): a signal at any
    moment, even during start-up, cannot surface as an exception inside rclpy. If a Worker is still inside
    torch at the end, the process ends at once with the code: interpreter finalisation would abort it
    ("terminate called without an active exception"), so a fit cut short by the signal must not reach it.
    """
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
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
