"""``hw_interface_node``: the real leg behind the topics and services of ``sim_bridge_node``.

A thin ROS shell over :class:`~leg_driver.control_loop.ControlLoop`, which talks to the MCU over
``port`` at ``loop_rate_hz`` (see that module for the safety rules) in a child process
(:mod:`~leg_driver.loop_process`: no interpreter lock shared with rclpy):

* publishes ``<robot>/joint_states`` (hip, knee; effort = torque the MCU applied; stamp = host time
  the state arrived): the loop process sends each new state after the cycle's command went out, and
  a reader thread here queues it and wakes the executor with a guard condition;
* applies the latest ``<robot>/effort_commands`` ([hip, knee] N*m) as a zero-order hold; a NaN,
  inf or wrong-length command is rejected, counted, logged and replaced by zero torque;
* ``<robot>/enable`` (SetBool) arms and disarms (starts disarmed); arming answers success only once
  the loop drives (armed here and on the MCU, link healthy, no over-temperature; see
  :mod:`~leg_driver.driver_node`), else it disarms and says why; ``<robot>/reset`` (Trigger)
  moves the joints to the start of the desired foot path with PID, answers once they settle and
  holds them there until the next effort command (armed only; a coroutine, so states keep flowing
  meanwhile);
* ``/diagnostics`` every ``diagnostics_period_s``: loop rate, period error, missed cycles, link and MCU
  counters, watchdog trips, command latency; its level covers the whole period (a fault in it is WARN
  or ERROR even if it is over).

With ``policy_runner`` (``mdemorl train sim:=none``) the node trains the leg itself: the policy runner acts inside
the loop process, each torque computed from that cycle's state (:mod:`~leg_driver.onboard_runner`), and the node
publishes transitions, returns and foot paths (:mod:`~leg_driver.onboard_agent`).

Parameters: ``stochlite_bringup/config/hw_interface.yaml``.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from stochlite_bringup.graph_topics import EFFORT_COMMANDS_TOPIC
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, Rule,
                                               one_of, parameter_error, within)
from stochlite_bringup.sim_robots import start_joint_angles
from stochlite_bringup.tasks.leg_simulation import MAX_JOINT_VELOCITY_RAD_PER_S, STALL_TORQUE_NM
from stochlite_bringup.tasks.leg_task import JOINT_NAMES

from .control_loop import LoopSettings, SafetyLimits
from .driver_node import LINK_SETTINGS, SERIAL_PARAMETERS, TRAINING_PARAMETERS, DriverNode
from .loop_process import HomeResult, LinkConfig, LoopProcess
from .loop_timing import NS_PER_S, request_realtime
from .runner_profiles import LegProfile

NODE_NAME = "hw_interface"
ROBOTS = ("leg",)  # robot:=stochlite: stochlite_hw_node.StochliteHwInterfaceNode, chosen in main()

PARAMETERS = {
    "robot": Param(str, "Robot and topic prefix (<robot>/joint_states, ...).", one_of(*ROBOTS)),
    "port": Param(str, "Serial device of the MCU (e.g. /dev/ttyACM0, or the link `mdemorl emulate` prints)."),
    **SERIAL_PARAMETERS,
    **TRAINING_PARAMETERS,
    "loop_rate_hz": Param(int, "Torque loop rate [Hz]: one TORQUE or HEARTBEAT frame per cycle.", AT_LEAST_1),
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
    "state_wait_us": Param(int, "With no new state at a deadline, keep reading for it this long [us] before answering "
                           "without one: the MCU's states reach the host with some jitter (0: never wait).",
                           NON_NEGATIVE),
    "home_kp_hip": Param(float, "Reset: proportional gain of the hip [N*m/rad].", POSITIVE),
    "home_kp_knee": Param(float, "Reset: proportional gain of the knee [N*m/rad] (its light shank needs far less "
                          "than the hip: too much oscillates at 500 Hz).", POSITIVE),
    "home_ki_hip": Param(float, "Reset: integral gain of the hip [N*m/(rad*s)].", NON_NEGATIVE),
    "home_ki_knee": Param(float, "Reset: integral gain of the knee [N*m/(rad*s)].", NON_NEGATIVE),
    "home_kd_hip": Param(float, "Reset: derivative gain of the hip [N*m*s/rad].", NON_NEGATIVE),
    "home_kd_knee": Param(float, "Reset: derivative gain of the knee [N*m*s/rad].", NON_NEGATIVE),
    "home_tolerance_rad": Param(float, "Reset succeeds once each joint is this close [rad] and slower than 10x "
                                "this [rad/s] for 50 ms; the PID then holds the pose until the first effort "
                                "command.", POSITIVE),
    "home_timeout_s": Param(float, "Reset fails after this long [s].", POSITIVE),
    "reject_log_period_s": Param(float, "Minimum time [s] between two warnings about rejected effort commands "
                                 "(all are counted)."),
    "timing_log": Param(str, "If set, an .npz written at exit with every cycle's deadline, wake-up lateness and index "
                        "and every command's arrival and state->command latency [ns, monotonic clock] (for "
                        "bench/driver_loop.py)."),
}


class HwInterfaceNode(DriverNode):
    """The serial driver as a ROS 2 node; ``loop`` is the handle of its control loop's process."""

    JOINT_NAMES = JOINT_NAMES
    COMMAND_KIND = "effort"
    REJECTED_ACTION = "applying zero torque"
    ARMED_MESSAGE = "armed: effort commands are applied"
    DISARMED_MESSAGE = "disarmed: zero torque"
    RESET_DONE = "joints at the start of the desired foot path"
    PERIOD_ERRORS = ("p50", "p99", "max")

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, PARAMETERS, EFFORT_COMMANDS_TOPIC, **node_kwargs)
        p = self.params
        if not (p["hip_min"] < p["hip_max"] and p["knee_min"] < p["knee_max"]):
            raise parameter_error(NODE_NAME, "hip_min", "and the other joint limits must satisfy min < max")
        limits = SafetyLimits(p["max_torque"], p["max_velocity"], (p["hip_min"], p["knee_min"]),
                              (p["hip_max"], p["knee_max"]))
        gains = {f"home_{k}": (p[f"home_{k}_hip"], p[f"home_{k}_knee"]) for k in ("kp", "ki", "kd")}
        settings = LoopSettings(**{name: p[name] for name in LINK_SETTINGS}, rate_hz=p["loop_rate_hz"],
                                realtime_priority=p["realtime_priority"], home_tolerance_rad=p["home_tolerance_rad"],
                                state_wait_us=p["state_wait_us"],
                                home_timeout_s=p["home_timeout_s"], **gains)
        link = LinkConfig(p["port"], p["baud"], int(p["handshake_timeout_s"] * NS_PER_S),
                          int(p["reconnect_period_s"] * NS_PER_S))
        self._last_state_ns = 0
        self._latencies_ns: list[int] = []  # this diagnostics window
        self._all_latencies_ns: list[tuple[int, int]] | None = [] if p["timing_log"] else None  # (arrival, latency)
        # The executor answers commands ahead of the learning load: one step below the loop. With the policy runner
        # no command passes through it, and its work (publishing, policy snapshots) must not take realtime time.
        self._executor_scheduling = (os.sched_getscheduler(0), os.sched_getparam(0))
        if not p["policy_runner"]:
            request_realtime(max(p["realtime_priority"] - 1, 0))
        runner = self.runner_settings() if p["policy_runner"] else None
        profile = (LegProfile(self.runner_params["max_torque"], start_joint_angles(), p["home_timeout_s"])
                   if runner is not None else None)
        self.loop = LoopProcess(link, limits, settings, self._hand_over, self._state_ready.trigger,
                                record_timing=bool(p["timing_log"]), runner=runner, profile=profile,
                                on_runner=lambda message: self.agent.on_runner(message))
        if runner is not None:
            self.start_agent(profile, self.loop)
        self.loop.start()
        self.get_logger().info(
            f"driving {p['robot']!r} on {p['port']} at {p['loop_rate_hz']} Hz, torques clamped to {p['max_torque']} "
            f"N*m; disarmed until {self._enable_service.service_name} is called with true")

    def _loop_stopped(self) -> None:
        os.sched_setscheduler(0, *self._executor_scheduling)
        if self.params["timing_log"]:
            cycles = np.asarray(self.loop.timing_log, dtype=np.int64).reshape(-1, 3)
            commands = np.asarray(self._all_latencies_ns, dtype=np.int64).reshape(-1, 2)
            np.savez(self.params["timing_log"], deadline_ns=cycles[:, 0], lateness_ns=cycles[:, 1], cycle=cycles[:, 2],
                     command_arrival_ns=commands[:, 0], command_latency_ns=commands[:, 1],
                     period_ns=NS_PER_S // self.params["loop_rate_hz"])

    def _published(self, state, stamp) -> None:
        self._last_state_ns = time.monotonic_ns()

    def _on_command(self, msg: Float64MultiArray) -> None:
        now = time.monotonic_ns()
        if self._last_state_ns:
            self._latencies_ns.append(now - self._last_state_ns)
            if self._all_latencies_ns is not None:
                self._all_latencies_ns.append((now, now - self._last_state_ns))
        self._offer(msg.data, now)

    def _request_arming(self) -> Callable[[], dict[str, object] | None]:
        return self.loop.request_arming()

    def _counters(self) -> dict[str, object]:
        return self.loop.counters()

    def _start_reset(self) -> HomeResult:
        return self.loop.start_home(start_joint_angles(), self.params["home_timeout_s"])

    def _extra_diagnostics(self) -> dict[str, object]:
        latencies, self._latencies_ns = self._latencies_ns, []
        return {"cmd_latency_p99_ms": round(float(np.percentile(latencies, 99)) / 1e6, 3) if latencies else "n/a",
                **super()._extra_diagnostics()}


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
