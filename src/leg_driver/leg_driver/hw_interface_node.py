"""``hw_interface_node``: the real leg behind the topics and services of ``sim_bridge_node``.

A thin ROS shell over :class:`~leg_driver.control_loop.ControlLoop`, which talks to the MCU over
``port`` at ``loop_rate_hz`` (see that module for the safety rules) in a child process
(:mod:`~leg_driver.loop_process`: no interpreter lock shared with rclpy):

* publishes ``<robot>/joint_states`` (hip, knee; effort = torque the MCU applied; stamp = host time
  the state arrived): the loop process sends each new state after the cycle's command went out, and
  a reader thread here queues it and wakes the executor with a guard condition;
* applies the latest ``<robot>/effort_commands`` ([hip, knee] N*m) as a zero-order hold; a NaN,
  inf or wrong-length command is rejected, counted, logged and replaced by zero torque;
* ``<robot>/enable`` (SetBool) arms and disarms (starts disarmed); ``<robot>/reset`` (Trigger)
  moves the joints to the start of the desired foot path with PID and answers once they settle
  (armed only; a coroutine, so states keep flowing meanwhile);
* ``/diagnostics`` every ``diagnostics_period_s``: loop rate, period error, missed cycles, link
  counters, watchdog trips, command latency.

Parameters: ``stochlite_bringup/config/hw_interface.yaml``.
"""
from __future__ import annotations

import collections
import os
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time as RosTime
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, EFFORT_COMMANDS_TOPIC,
                                            ENABLE_SERVICE, JOINT_STATES_TOPIC, RESET_SERVICE, ROBOT_QOS)
from stochlite_bringup.node_diagnostics import diagnostics_message
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters,
                                               Rule, one_of, parameter_error, within)
from stochlite_bringup.sim_robots import start_joint_angles
from stochlite_bringup.tasks.leg_simulation import MAX_JOINT_VELOCITY_RAD_PER_S, STALL_TORQUE_NM
from stochlite_bringup.tasks.leg_task import JOINT_NAMES

from .control_loop import LoopSettings, SafetyLimits, StateSample
from .loop_timing import NS_PER_S, request_realtime
from .loop_process import LinkConfig, LoopProcess

NODE_NAME = "hw_interface"
ROBOTS = ("leg",)  # robot:=stochlite: stochlite_hw_node.StochliteHwInterfaceNode, chosen in main()
STATE_BACKLOG = 8  # states queued for publishing while the executor is busy (a reset); older ones are dropped

PARAMETERS = {
    "robot": Param(str, "Robot and topic prefix (<robot>/joint_states, ...).", one_of(*ROBOTS)),
    "port": Param(str, "Serial device of the MCU (e.g. /dev/ttyACM0, or the link `mdemorl emulate` prints)."),
    "baud": Param(int, "Baud rate of a real UART (USB CDC and ptys ignore it).", AT_LEAST_1),
    "loop_rate_hz": Param(int, "Torque loop rate [Hz]: one TORQUE or HEARTBEAT frame per cycle.", AT_LEAST_1),
    "spin_us": Param(int, "Busy-wait this long [us] before each deadline instead of sleeping.", NON_NEGATIVE),
    "realtime_priority": Param(int, "SCHED_FIFO priority of the loop thread (0: normal scheduling); falls back "
                               "to normal scheduling (said in /diagnostics 'scheduling') if refused.",
                               Rule(lambda v: 0 <= v <= 99, "in [0, 99]")),
    "max_torque": Param(float, "Torque clamp [N*m] per joint.", within(0.0, STALL_TORQUE_NM)),
    "max_velocity": Param(float, "Joint speed [rad/s] above which no torque may speed the joint up further.",
                          within(0.0, MAX_JOINT_VELOCITY_RAD_PER_S)),
    "hip_min": Param(float, "Hip lower limit [rad]: below it, no torque that pushes further down."),
    "hip_max": Param(float, "Hip upper limit [rad]: above it, no torque that pushes further up."),
    "knee_min": Param(float, "Knee lower limit [rad]."),
    "knee_max": Param(float, "Knee upper limit [rad]."),
    "command_timeout_s": Param(float, "Watchdog: zero torque when the newest effort command is older [s].",
                               POSITIVE),
    "state_timeout_cycles": Param(int, "Link fault (zero torque) after more cycles than this without a state "
                                  "frame.", AT_LEAST_1),
    "max_ack_lag_cycles": Param(int, "Link fault (zero torque) when the MCU acknowledges commands more frames "
                                "late than this.", AT_LEAST_1),
    "handshake_timeout_s": Param(float, "Resend HELLO after this long without HELLO_ACK [s].", POSITIVE),
    "reconnect_period_s": Param(float, "Retry a lost or unopenable port this often [s].", POSITIVE),
    "home_kp_hip": Param(float, "Reset: proportional gain of the hip [N*m/rad].", POSITIVE),
    "home_kp_knee": Param(float, "Reset: proportional gain of the knee [N*m/rad] (its light shank needs far less "
                          "than the hip: too much oscillates at 500 Hz).", POSITIVE),
    "home_ki_hip": Param(float, "Reset: integral gain of the hip [N*m/(rad*s)].", NON_NEGATIVE),
    "home_ki_knee": Param(float, "Reset: integral gain of the knee [N*m/(rad*s)].", NON_NEGATIVE),
    "home_kd_hip": Param(float, "Reset: derivative gain of the hip [N*m*s/rad].", NON_NEGATIVE),
    "home_kd_knee": Param(float, "Reset: derivative gain of the knee [N*m*s/rad].", NON_NEGATIVE),
    "home_tolerance_rad": Param(float, "Reset succeeds once each joint is this close [rad] and slower than 10x "
                                "this [rad/s] for 50 ms.", POSITIVE),
    "home_timeout_s": Param(float, "Reset fails after this long [s].", POSITIVE),
    "diagnostics_period_s": Param(float, "Seconds between two /diagnostics messages.", POSITIVE),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected effort commands "
                                 "(all are counted)."),
    "timing_log": Param(str, "If set, an .npz written at exit with every cycle's deadline and wake-up lateness "
                        "and every command's arrival and state->command latency [ns, monotonic clock] (for "
                        "bench/driver_loop.py)."),
}


class _Until:
    """Awaitable in an rclpy coroutine callback: done once ``predicate()`` is true (checked at each executor wake)."""

    def __init__(self, predicate) -> None:
        self._predicate = predicate

    def __await__(self):
        while not self._predicate():
            yield


class HwInterfaceNode(Node):
    """The serial driver as a ROS 2 node; ``loop`` is the handle of its control loop's process."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, NODE_NAME, PARAMETERS)
        if not p["port"]:
            raise parameter_error(NODE_NAME, "port", "is empty: set the MCU's serial device (port:=/dev/ttyACM0, "
                                  "or the link `mdemorl emulate robot:=leg` prints)")
        if not (p["hip_min"] < p["hip_max"] and p["knee_min"] < p["knee_max"]):
            raise parameter_error(NODE_NAME, "hip_min", "and the other joint limits must satisfy min < max")
        self.params = p
        robot = p["robot"]
        limits = SafetyLimits(p["max_torque"], p["max_velocity"], (p["hip_min"], p["knee_min"]),
                              (p["hip_max"], p["knee_max"]))
        gains = {f"home_{k}": (p[f"home_{k}_hip"], p[f"home_{k}_knee"]) for k in ("kp", "ki", "kd")}
        settings = LoopSettings(p["loop_rate_hz"], p["spin_us"], p["command_timeout_s"], p["state_timeout_cycles"],
                                p["max_ack_lag_cycles"], p["realtime_priority"], home_tolerance_rad=p["home_tolerance_rad"],
                                home_timeout_s=p["home_timeout_s"], **gains)
        link = LinkConfig(p["port"], p["baud"], int(p["handshake_timeout_s"] * NS_PER_S),
                          int(p["reconnect_period_s"] * NS_PER_S))
        self._last_state_ns = 0
        self._latencies_ns: list[int] = []  # this diagnostics window
        self._all_latencies_ns: list[tuple[int, int]] | None = [] if p["timing_log"] else None  # (arrival, latency)
        self._window_start_ns = time.monotonic_ns()
        self._state_pub = self.create_publisher(JointState, f"{robot}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._command_sub = self.create_subscription(Float64MultiArray, f"{robot}/{EFFORT_COMMANDS_TOPIC}",
                                                     self._on_command, ROBOT_QOS)
        enable = self.create_service(SetBool, f"{robot}/{ENABLE_SERVICE}", self._on_enable)
        # its own group: while the reset coroutine waits, the default group's callbacks keep running
        self.create_service(Trigger, f"{robot}/{RESET_SERVICE}", self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        # The executor answers commands ahead of the learning load: one step below the loop.
        self._executor_scheduling = (os.sched_getscheduler(0), os.sched_getparam(0))
        request_realtime(max(p["realtime_priority"] - 1, 0))
        self._new_states: collections.deque[StateSample] = collections.deque(maxlen=STATE_BACKLOG)
        self._state_ready = self.create_guard_condition(self._publish_states)
        self._counters: dict[str, object] = {"fault": "starting"}
        self.loop = LoopProcess(link, limits, settings, self._hand_over, self._state_ready.trigger,
                                record_timing=bool(p["timing_log"]))
        self.loop.start()
        self.get_logger().info(
            f"driving {robot!r} on {p['port']} at {p['loop_rate_hz']} Hz, torques clamped to {p['max_torque']} N*m; "
            f"disarmed until {enable.service_name} is called with true")

    def destroy_node(self) -> None:
        if hasattr(self, "loop"):  # absent when the constructor refused its parameters
            self.loop.stop()
            os.sched_setscheduler(0, *self._executor_scheduling)
            if self.params["timing_log"]:
                cycles = np.asarray(self.loop.timing_log, dtype=np.int64).reshape(-1, 2)
                commands = np.asarray(self._all_latencies_ns, dtype=np.int64).reshape(-1, 2)
                np.savez(self.params["timing_log"], deadline_ns=cycles[:, 0], lateness_ns=cycles[:, 1],
                         command_arrival_ns=commands[:, 0], command_latency_ns=commands[:, 1],
                         period_ns=NS_PER_S // self.params["loop_rate_hz"])
        super().destroy_node()

    def _hand_over(self, sample: StateSample) -> None:
        """Reader thread: queue a new state from the loop process for the executor."""
        self._new_states.append(sample)
        self._state_ready.trigger()

    def _publish_states(self) -> None:
        """Executor: publish the states the loop handed over, oldest first (normally one)."""
        wall_minus_monotonic = self.get_clock().now().nanoseconds - time.monotonic_ns()
        while self._new_states:
            sample = self._new_states.popleft()
            s = sample.state
            msg = JointState(name=list(JOINT_NAMES), position=list(s.position), velocity=list(s.velocity),
                             effort=list(s.torque))
            msg.header.stamp = RosTime(nanoseconds=sample.received_ns + wall_minus_monotonic).to_msg()
            self._state_pub.publish(msg)
            self._last_state_ns = time.monotonic_ns()

    def _on_command(self, msg: Float64MultiArray) -> None:
        now = time.monotonic_ns()
        if self._last_state_ns:
            self._latencies_ns.append(now - self._last_state_ns)
            if self._all_latencies_ns is not None:
                self._all_latencies_ns.append((now, now - self._last_state_ns))
        problem = self.loop.offer(msg.data, now)
        if problem:
            self.get_logger().warning(
                f"rejected effort command {list(msg.data)} on {self._command_sub.topic_name}: it {problem}; applying "
                f"zero torque ({self.loop.rejected} rejected so far)",
                throttle_duration_sec=self.params["reject_log_period_s"])

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.loop.set_armed(request.data)
        response.success = True
        response.message = "armed: effort commands are applied" if request.data else "disarmed: zero torque"
        if request.data and self._counters["fault"]:
            response.message += f" once the link is healthy ({self._counters['fault']})"
        self.get_logger().info(response.message)
        return response

    async def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """A coroutine: the executor keeps publishing and taking commands while the joints move."""
        home = self.loop.start_home(start_joint_angles(), self.params["home_timeout_s"])
        await _Until(home.done.is_set)
        response.success = home.ok
        if home.ok:
            response.message = f"joints at the start of the desired foot path: {home.message}"
            self.get_logger().info(response.message)
        else:
            response.message = f"reset failed: {home.message}"
            self.get_logger().error(response.message)
        return response

    def _publish_diagnostics(self) -> None:
        now = time.monotonic_ns()
        self._counters = counters = self.loop.counters()
        latencies, self._latencies_ns = self._latencies_ns, []
        elapsed_s = (now - self._window_start_ns) / NS_PER_S
        self._window_start_ns = now
        values = {
            "loop_rate_hz": round(counters.get("cycles", 0) / elapsed_s, 1),
            "period_error_p50_ms": round(counters.get("period_p50_ms", 0.0), 4),
            "period_error_p99_ms": round(counters.get("period_p99_ms", 0.0), 4),
            "period_error_max_ms": round(counters.get("period_max_ms", 0.0), 4),
            **{k: v for k, v in counters.items() if k not in ("cycles", "fault") and not k.startswith("period_")},
            "armed": self.loop.armed, "rejected_commands": self.loop.rejected,
            "cmd_latency_p99_ms": round(float(np.percentile(latencies, 99)) / 1e6, 3) if latencies else "n/a",
        }
        self._diagnostics_pub.publish(diagnostics_message(self, values, str(counters.get("fault", "no answer from the "
                                                                                       "control loop process"))))


def profile_node() -> Node:
    """The driver of the profile the ``robot`` parameter names: the leg's torque loop, or StochLite's position loop."""
    from .stochlite_hw_node import StochliteHwInterfaceNode

    probe = Node(f"{NODE_NAME}_profile")  # a ``-r __node:=`` remap names it as the driver: same parameters
    robot = probe.declare_parameter("robot", "leg").value
    probe.destroy_node()
    return StochliteHwInterfaceNode() if robot == "stochlite" else HwInterfaceNode()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run leg_driver hw_interface_node``."""
    return run_node(profile_node, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
