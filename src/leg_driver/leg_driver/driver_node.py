"""The ROS 2 shell both profiles' drivers share: parameters, joint states, commands, enable, reset, /diagnostics.

A profile's node builds its loop handle as ``loop`` (``offer``, ``rejected``, ``set_armed``, ``counters``,
and ``armed``, ``mcu_armed``, ``fault``, ``latest_state`` for :func:`~leg_driver.arming.arming_report`) with
:meth:`DriverNode._hand_over` as its state callback, starts it, and implements :meth:`DriverNode._start_reset`.

``<prefix>/enable`` true arms the loop, then waits up to ``enable_timeout_s`` for it to drive the robot
(armed here and on the MCU, the link healthy, no over-temperature); otherwise it disarms and answers
success=False with the reason and the fix.

``/diagnostics`` reports every counter, and the level of the whole period since the last message: ERROR
while the link is faulty or the MCU reports over-temperature, and after an over-temperature in the
period; WARN after any other fault in the period (a counter of :data:`FAULT_COUNTERS` grew, or a fault
of the last message ended); else OK. The message names what happened: the fault now, the counters
that grew, the last link fault. With a ``run_dir``, each of these is also a line of ``run_dir/health.log``
(:func:`period_problems`), which the launcher's final summary names.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.time import Time as RosTime
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ENABLE_SERVICE, JOINT_STATES_TOPIC,
                                            RESET_SERVICE, ROBOT_QOS)
from mdemorl_learner.runner_parameters import RUNNER_PARAMETERS, RUNNER_SECTION, check_pacing
from stochlite_bringup.node_diagnostics import diagnostics_message
from stochlite_bringup.node_parameters import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, declare_parameters
from stochlite_bringup.node_parameters import parameter_error
from stochlite_bringup.run_health import HealthProblem, record_problem

from .arming import arming_problem, arming_report
from .loop_timing import NS_PER_S
from .onboard_runner import RunnerSettings

STATE_BACKLOG = 8  # states queued for publishing while the executor is busy (a reset); older ones are dropped
ARMING_POLL_S = 0.02  # while enable waits for the loop to drive, ask for its arming this often
ARMING_ANSWER_S = 0.25  # a loop that gives no arming report within this does not answer
NO_ANSWER = "no answer from the control loop"
STARTING = "starting"  # the fault of a loop before its first cycle
# any growth in a diagnostics period: at least WARN (a dict counter: any of its entries)
FAULT_COUNTERS = ("link_faults", "invalid_states", "crc_errors", "resyncs", "skipped_bytes", "dropped_frames",
                  "link_losses", "write_overruns", "mcu_errors", "mcu_flags", "servo_faults", "watchdog_trips",
                  "rejected_commands")
OVERHEAT_COUNTERS = ("mcu_flags.OVER_TEMPERATURE", "servo_faults")  # any growth in a diagnostics period: ERROR

SERIAL_PARAMETERS = {
    "baud": Param(int, "Baud rate of a real UART (USB CDC and ptys ignore it).", AT_LEAST_1),
    "spin_us": Param(int, "Busy-wait this long [us] before each deadline instead of sleeping.", NON_NEGATIVE),
    "handshake_timeout_s": Param(float, "Resend HELLO after this long without HELLO_ACK [s].", POSITIVE),
    "reconnect_period_s": Param(float, "Retry a lost or unopenable port this often [s].", POSITIVE),
    "diagnostics_period_s": Param(float, "Seconds between two /diagnostics messages.", POSITIVE),
    "run_dir": Param(str, "If set, the run's directory: each fault of a /diagnostics period is also a line of its "
                     "health.log, which the launcher's final summary names."),
    "enable_timeout_s": Param(float, "enable true waits this long [s] for the loop to drive (armed here and on the "
                              "MCU, link healthy, no over-temperature), else disarms and answers no.", POSITIVE),
    "state_timeout_cycles": Param(int, "Link fault (safe state) after more cycles than this without a valid state "
                                  "frame.", AT_LEAST_1),
    "max_ack_lag_cycles": Param(int, "Link fault (safe state) once the MCU's acknowledgement is this many frames "
                                "behind what was sent.", AT_LEAST_1),
    "recovery_cycles": Param(int, "A link fault ends only after this many healthy cycles in a row; more than "
                             "state_timeout_cycles + 1, so that a starved state stream never re-arms.", AT_LEAST_1),
    "state_margin_rad": Param(float, "A state frame whose joint position lies further than this outside the joint "
                              "limits [rad] is invalid (a link fault).", NON_NEGATIVE),
    "state_max_velocity": Param(float, "A state frame with a joint faster than this [rad/s] is invalid (a link "
                                "fault).", POSITIVE),
}
TRAINING_PARAMETERS = {
    "policy_runner": Param(bool, "Train: run the policy in the driver's loop with the runner.* settings (the agent's, "
                           "config/agent.yaml), publish its transitions and returns, end the run after the last "
                           "evaluation (leg_driver/onboard_agent.py); false: apply the command topic."),
}
RUNNER_PREFIX = "runner."  # the policy runner's parameters (defaults in config/agent.yaml)
LINK_SETTINGS = ("spin_us", "command_timeout_s", "state_timeout_cycles", "max_ack_lag_cycles", "recovery_cycles",
                 "state_margin_rad", "state_max_velocity")  # the parameters that are the loop's settings as named


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
        if p["recovery_cycles"] <= p["state_timeout_cycles"] + 1:
            raise parameter_error(node_name, "recovery_cycles", f"= {p['recovery_cycles']} must exceed "
                                  f"state_timeout_cycles + 1 = {p['state_timeout_cycles'] + 1}: a state stream "
                                  "that only just beats the timeout would re-arm between its states")
        self.prefix = prefix or p["robot"]
        self.runner_params = check_pacing(node_name, declare_parameters(
            self, node_name, RUNNER_PARAMETERS, section=RUNNER_SECTION, prefix=RUNNER_PREFIX), RUNNER_PREFIX)
        self.agent = None  # an OnboardAgent while training (policy_runner)
        self._exit_code: int | None = None
        self._state_pub = self.create_publisher(JointState, f"{self.prefix}/{JOINT_STATES_TOPIC}", ROBOT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._command_sub = self.create_subscription(Float64MultiArray, f"{self.prefix}/{command_topic}",
                                                     self._on_command, ROBOT_QOS)
        # coroutines in groups of their own: while one waits, the default group's callbacks keep running; enable's
        # is reentrant, so that enable false disarms at once even while an enable true waits
        self._enable_service = self.create_service(SetBool, f"{self.prefix}/{ENABLE_SERVICE}", self._on_enable,
                                                   callback_group=ReentrantCallbackGroup())
        self.create_service(Trigger, f"{self.prefix}/{RESET_SERVICE}", self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self._new_states: collections.deque = collections.deque(maxlen=STATE_BACKLOG)
        self._state_ready = self.create_guard_condition(self._publish_states)
        self._window_start_ns = time.monotonic_ns()
        self._reported: dict[str, int] = {}  # the fault counters in the last /diagnostics message
        self._problems_reported: list[str] = []  # and what kept the driver from driving then

    @property
    def exit_code(self) -> int | None:
        """With the policy runner, set once the run ended; else once a stop was requested."""
        return self.agent.exit_code if self.agent is not None else self._exit_code

    def request_stop(self) -> None:
        """SIGINT/SIGTERM: a training run disarms and ends (exit 0); a plain driver just stops."""
        if self.agent is not None:
            self.agent.stop(0, "interrupted")
        else:
            self._exit_code = 0

    def runner_settings(self) -> RunnerSettings:
        """The policy runner's settings; ValueError for step pacing, which a robot cannot follow."""
        r = self.runner_params
        if r["pacing"] == "step":
            raise parameter_error(self.get_name(), f"{RUNNER_PREFIX}pacing", "is step, which holds each command: a "
                                  "robot cannot pause between two commands; use episode (or off)")
        return RunnerSettings(r["episode_steps"], r["steps_per_epoch"], r["epochs"], r["start_steps"],
                              r["transitions_per_batch"], r["seed"], r["pacing"], r["max_policy_lag"])

    def start_agent(self, profile, runner) -> None:
        """Train through ``runner`` (``offer_policy``, ``resume_at``, ``run_episodes``) for the robot of ``profile``;
        its messages go to ``self.agent.on_runner``."""
        from .onboard_agent import OnboardAgent  # torch, for the snapshots: never in the leg's loop process

        self.agent = OnboardAgent(self, self.runner_params, self.prefix, profile, runner)

    def episode_began(self) -> None:
        """What a profile does when the runner begins an episode (nothing by default)."""

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

    async def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """A coroutine: arming waits (up to ``enable_timeout_s``) for the loop to drive, or disarms and says why."""
        self.loop.set_armed(request.data)
        problem = await self.arming_problem() if request.data else ""
        if problem:
            self.loop.set_armed(False)
            response.success, response.message = False, f"cannot arm: {problem}; disarmed"
            self.get_logger().error(f"{self._enable_service.service_name}: {response.message}")
        else:
            response.success = True
            response.message = self.ARMED_MESSAGE if request.data else self.DISARMED_MESSAGE
            self.get_logger().info(response.message)
        return response

    async def wait_s(self, seconds: float) -> None:
        """Awaitable in a coroutine callback: ``seconds`` pass while the executor runs other callbacks."""
        end = time.monotonic() + seconds
        wake = self.create_timer(ARMING_POLL_S, lambda: None)
        try:
            await _Until(lambda: time.monotonic() >= end)
        finally:
            self.destroy_timer(wake)

    async def arming_problem(self) -> str:
        """Why the loop does not drive the robot ('' once it does), after waiting up to ``enable_timeout_s``."""
        deadline = time.monotonic() + self.params["enable_timeout_s"]
        wake = self.create_timer(ARMING_POLL_S, lambda: None)  # the executor checks the wait at least this often
        try:
            while True:
                report = await self._arming_report()
                problem = arming_problem(report)
                # a loop that disarmed meanwhile (over-temperature, enable false) stays so: no need to wait
                if not problem or report.get("armed") is False or time.monotonic() >= deadline:
                    return problem
                next_poll = time.monotonic() + ARMING_POLL_S
                await _Until(lambda: time.monotonic() >= next_poll)
        finally:
            self.destroy_timer(wake)

    async def _arming_report(self) -> dict[str, object]:
        """The loop's :func:`~leg_driver.arming.arming_report`, fresh (``fault`` says so if it does not answer)."""
        answer = self._request_arming()
        give_up = time.monotonic() + ARMING_ANSWER_S
        await _Until(lambda: answer() is not None or time.monotonic() >= give_up)
        return answer() or {"fault": NO_ANSWER}

    def _request_arming(self) -> Callable[[], dict[str, object] | None]:
        """Ask the loop for its arming report; a function that returns it once there (None before). A loop on a
        thread of this process answers at once."""
        report = arming_report(self.loop)
        return lambda: report

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
        """A profile's own /diagnostics values (the runner's while training)."""
        return self.agent.diagnostics() if self.agent is not None else {}

    def _warnings(self) -> list[str]:
        """The period's problems beyond the loop's (the runner's episodes), each making /diagnostics at least WARN."""
        return self.agent.take_warnings() if self.agent is not None else []

    def _counters(self) -> dict[str, object]:
        """The loop's counters with its arming report (an empty dict while the loop has never answered)."""
        return {**arming_report(self.loop), **self.loop.counters()}

    def _publish_diagnostics(self) -> None:
        now = time.monotonic_ns()
        loop_counters = self._counters()
        counters = {**loop_counters, "rejected_commands": self.loop.rejected}  # counted where commands arrive
        elapsed_s = (now - self._window_start_ns) / NS_PER_S
        self._window_start_ns = now
        counts = flat_counts(counters)
        grown = {k: n - self._reported.get(k, 0) for k, n in counts.items() if n > self._reported.get(k, 0)}
        problems = current_problems(counters) if loop_counters else [NO_ANSWER]
        level, message = period_status(problems, self._problems_reported, grown, str(counters.get("last_fault", "")),
                                       elapsed_s)
        warnings = self._warnings()
        if warnings:
            level = max(level, DiagnosticStatus.WARN)
            message = "; ".join([message, *warnings] if message else warnings)
        self._reported, self._problems_reported = counts, problems
        if self.params["run_dir"]:
            for problem in period_problems(self.get_name(), problems, grown, elapsed_s):
                record_problem(self.params["run_dir"], problem)
        values = {
            "loop_rate_hz": round(counters.get("cycles", 0) / elapsed_s, 1),
            **{f"period_error_{p}_ms": round(counters.get(f"period_{p}_ms", 0.0), 4) for p in self.PERIOD_ERRORS},
            **{k: v for k, v in counters.items() if k not in ("cycles", "fault") and not k.startswith("period_")
               and not isinstance(v, dict)},
            **counts, **self._extra_diagnostics(),
        }
        self._diagnostics_pub.publish(diagnostics_message(self, values, message, level))


def flat_counts(counters: dict[str, object]) -> dict[str, int]:
    """The :data:`FAULT_COUNTERS` in ``counters``; a dict counter as its total and each entry (``name.KEY``)."""
    counts = {}
    for name in FAULT_COUNTERS:
        value = counters.get(name, 0)
        if isinstance(value, dict):
            counts[name] = sum(value.values())
            counts.update({f"{name}.{key}": n for key, n in value.items()})
        else:
            counts[name] = int(value)
    return counts


def current_problems(counters: dict[str, object]) -> list[str]:
    """What keeps the driver from driving now: a link fault, the MCU's over-temperature."""
    fault = counters.get("fault")
    problems = [f"link fault: {fault}"] if fault and fault != STARTING else []  # a loop not started yet is no fault
    if counters.get("over_temperature"):
        problems.append("the MCU reports over-temperature (the driver disarmed)")
    return problems


def counted_events(grown: dict[str, int]) -> dict[str, int]:
    """The counters of ``grown`` to name: a dict counter by its entries (``name.KEY``), not its total."""
    return {name: n for name, n in grown.items() if not any(entry.startswith(f"{name}.") for entry in grown)}


def period_problems(node: str, problems: list[str], grown: dict[str, int], period_s: float) -> list[HealthProblem]:
    """The health.log lines of a period: each fault at its end (``problems``) and each fault counter that grew
    in it (``grown``, by how much)."""
    faults = [HealthProblem(node, "fault", 1, problem) for problem in problems]
    return faults + [HealthProblem(node, name, n, f"in the {period_s:.1f} s period")
                     for name, n in counted_events(grown).items()]


def period_status(problems: list[str], problems_before: list[str], grown: dict[str, int], last_fault: str,
                  period_s: float) -> tuple[bytes, str]:
    """The /diagnostics level and message of a period: ``problems`` at its end, ``problems_before`` at its start
    (the last message's), ``grown`` the fault counters that grew in it, by how much."""
    events = [f"{name} +{n}" for name, n in counted_events(grown).items()]
    said = list(problems)
    if problems_before and not problems:
        said.append(f"over since the last report: {'; '.join(problems_before)}")
    overheated = any(name in grown for name in OVERHEAT_COUNTERS)
    if overheated and not any("over-temperature" in p for p in said):
        said.append("the MCU reported over-temperature: the driver disarmed, enable true drives again")
    if events:
        said.append(f"in the last {period_s:.1f} s: {', '.join(events)}")
        if last_fault and not any(last_fault in p for p in said):
            said.append(f"last link fault: {last_fault}")
    if problems or overheated:
        level = DiagnosticStatus.ERROR
    else:
        level = DiagnosticStatus.WARN if said else DiagnosticStatus.OK
    return level, "; ".join(said)
