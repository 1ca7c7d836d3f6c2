"""The ROS 2 shell both profiles' drivers share: parameters, joint states, commands, enable, reset, /diagnostics.

A profile's node builds its loop handle as ``loop`` (``offer``, ``rejected``, ``set_armed``,
``armed``, ``fault``, ``counters``) with :meth:`DriverNode._hand_over` as its state callback, starts
it, and implements :meth:`DriverNode._start_reset`.
"""
from __future__ import annotations

import collections
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time as RosTime
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ENABLE_SERVICE, JOINT_STATES_TOPIC,
                                            RESET_SERVICE, ROBOT_QOS)
from stochlite_bringup.node_diagnostics import diagnostics_message
from stochlite_bringup.node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters
from stochlite_bringup.node_parameters import parameter_error

from .loop_timing import NS_PER_S

STATE_BACKLOG = 8  # states queued for publishing while the executor is busy (a reset); older ones are dropped

SERIAL_PARAMETERS = {
    "baud": Param(int, "Baud rate of a real UART (USB CDC and ptys ignore it).", AT_LEAST_1),
    "spin_us": Param(int, "Busy-wait this long [us] before each deadline instead of sleeping.", NON_NEGATIVE),
    "handshake_timeout_s": Param(float, "Resend HELLO after this long without HELLO_ACK [s].", POSITIVE),
    "reconnect_period_s": Param(float, "Retry a lost or unopenable port this often [s].", POSITIVE),
    "diagnostics_period_s": Param(float, "Seconds between two /diagnostics messages.", POSITIVE),
}


class _Until:
    """Awaitable in an rclpy coroutine callback: done once ``predicate()`` is true (checked at each executor wake)."""

    def __init__(self, predicate) -> None:
        self._predicate = predicate

    def __await__(self):
        while not self._predicate():
            yield


class DriverNode(Node):
    """The shell: ``<prefix>/joint_states``, ``<prefix>/<command_topic>``, ``<prefix>/enable``, ``<prefix>/reset``.

    ``prefix`` defaults to the ``robot`` parameter. Profile specifics are class attributes:
    ``JOINT_NAMES``, ``COMMAND_KIND`` and ``REJECTED_ACTION`` (the warning about a rejected command), ``ARMED_MESSAGE``,
    ``DISARMED_MESSAGE`` and ``RESET_DONE`` (service answers), ``PERIOD_ERRORS`` (percentiles of the
    period error in /diagnostics).
    """

    JOINT_NAMES: tuple[str, ...]
    COMMAND_KIND: str
    REJECTED_ACTION: str
    ARMED_MESSAGE: str
    DISARMED_MESSAGE: str
    RESET_DONE: str
    PERIOD_ERRORS: tuple[str, ...]

    def __init__(self, node_name: str, parameters: dict[str, Param], command_topic: str, prefix: str = "",
                 **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = p = declare_parameters(self, node_name, parameters)
        if not p["port"]:
            raise parameter_error(node_name, "port", "is empty: set the MCU's serial device (port:=/dev/ttyACM0, "
                                  f"or the link `mdemorl emulate robot:={p['robot']}` prints)")
        self.prefix = prefix or p["robot"]
        self._state_pub = self.create_publisher(JointState, f"{self.prefix}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._command_sub = self.create_subscription(Float64MultiArray, f"{self.prefix}/{command_topic}",
                                                     self._on_command, ROBOT_QOS)
        self._enable_service = self.create_service(SetBool, f"{self.prefix}/{ENABLE_SERVICE}", self._on_enable)
        # its own group: while the reset coroutine waits, the default group's callbacks keep running
        self.create_service(Trigger, f"{self.prefix}/{RESET_SERVICE}", self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self._new_states: collections.deque = collections.deque(maxlen=STATE_BACKLOG)
        self._state_ready = self.create_guard_condition(self._publish_states)
        self._window_start_ns = time.monotonic_ns()

    def destroy_node(self) -> None:
        if hasattr(self, "loop"):  # absent when the constructor refused its parameters
            self.loop.stop()
            self._loop_stopped()
        super().destroy_node()

    def _loop_stopped(self) -> None:
        """What a profile does once its loop stopped (nothing by default)."""

    def _hand_over(self, sample) -> None:
        """Loop's thread: queue a new state for the executor."""
        self._new_states.append(sample)
        self._state_ready.trigger()

    def _publish_states(self) -> None:
        """Executor: publish the states the loop handed over, oldest first (normally one)."""
        wall_minus_monotonic = self.get_clock().now().nanoseconds - time.monotonic_ns()
        while self._new_states:
            sample = self._new_states.popleft()
            s = sample.state
            stamp = RosTime(nanoseconds=sample.received_ns + wall_minus_monotonic).to_msg()
            msg = JointState(name=list(self.JOINT_NAMES), position=list(s.position), velocity=list(s.velocity),
                             effort=list(s.torque))
            msg.header.stamp = stamp
            self._state_pub.publish(msg)
            self._published(s, stamp)

    def _published(self, state, stamp) -> None:
        """What a profile does after publishing a state's joint states (nothing by default)."""

    def _on_command(self, msg: Float64MultiArray) -> None:
        self._offer(msg.data, time.monotonic_ns())

    def _offer(self, values, now_ns: int) -> None:
        problem = self.loop.offer(values, now_ns)
        if problem:
            self.get_logger().warning(
                f"rejected {self.COMMAND_KIND} command {list(values)} on {self._command_sub.topic_name}: it {problem}; "
                f"{self.REJECTED_ACTION} ({self.loop.rejected} rejected so far)",
                throttle_duration_sec=self.params["reject_log_period_s"])

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.loop.set_armed(request.data)
        response.success = True
        response.message = self.ARMED_MESSAGE if request.data else self.DISARMED_MESSAGE
        if request.data and self.loop.fault:
            response.message += f", once the link is healthy ({self.loop.fault})"
        self.get_logger().info(response.message)
        return response

    def _start_reset(self):
        """Start the profile's reset move; a request with ``done``, ``ok`` and ``message``."""
        raise NotImplementedError

    def _reset_finished(self, ok: bool) -> None:
        """What a profile does when a reset ended (nothing by default)."""

    async def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """A coroutine: the executor keeps publishing and taking commands while the joints move."""
        reset = self._start_reset()
        await _Until(reset.done.is_set)
        response.success = reset.ok
        response.message = f"{self.RESET_DONE}: {reset.message}" if reset.ok else f"reset failed: {reset.message}"
        self._reset_finished(reset.ok)
        if reset.ok:
            self.get_logger().info(response.message)
        else:
            self.get_logger().error(response.message)
        return response

    def _extra_diagnostics(self) -> dict[str, object]:
        """A profile's own /diagnostics values (none by default)."""
        return {}

    def _publish_diagnostics(self) -> None:
        now = time.monotonic_ns()
        counters = self.loop.counters()
        elapsed_s = (now - self._window_start_ns) / NS_PER_S
        self._window_start_ns = now
        values = {
            "loop_rate_hz": round(counters.get("cycles", 0) / elapsed_s, 1),
            **{f"period_error_{p}_ms": round(counters.get(f"period_{p}_ms", 0.0), 4) for p in self.PERIOD_ERRORS},
            **{k: v for k, v in counters.items() if k not in ("cycles", "fault") and not k.startswith("period_")},
            "armed": self.loop.armed, "rejected_commands": self.loop.rejected, **self._extra_diagnostics(),
        }
        self._diagnostics_pub.publish(diagnostics_message(self, values, str(counters.get("fault", "no answer from the "
                                                                                       "control loop process"))))
