"""The ROS side of the policy runner in a driver's loop (``policy_runner``): the agent's part on hardware.

The hardware interface, given ``runner.*`` settings (the agent's, ``config/agent.yaml``), trains the robot itself:
once the learner listens to ``/mdemorl/transitions/env`` it arms the loop (three attempts, 2 s apart, else the
run fails naming why), resumes from the learner's ``/mdemorl/status`` if asked, and lets the runner in the loop
run the episodes (:mod:`~leg_driver.onboard_runner`; the leg's in its loop process). Policy snapshots from
``/mdemorl/policy`` are checked and turned into numpy actors on a thread of their own and offered to the runner,
which swaps them in between episodes. What
the runner reports is published here (:class:`~mdemorl_learner.episode_reports.EpisodeReporter`): D_ENV batches,
returns, foot paths; each episode is a row of ``run_dir/hil_episodes.csv``.

Health: an episode whose control rate is under :data:`CONTROL_RATE_FLOOR` of the loop rate, with a watchdog
trip or link fault, or with more than :data:`LATE_ACK_FLOOR` of its commands applied a tick late, is a WARN in
/diagnostics and a line of ``run_dir/health.log``; a pacing hold longer than
``policy_wait_warning_s`` is a learning stall (WARN, ``stalls.log``). After the last evaluation the loop is
disarmed and the node exits 0.
"""
from __future__ import annotations

import collections
import csv
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mdemorl_learner.episode_reports import EpisodeReporter
from mdemorl_learner.stalls import record_stall
from mdemorl_msgs.msg import Snapshot, TrainingStatus
from stochlite_bringup.graph_topics import POLICY_TOPIC, SNAPSHOT_QOS, STATUS_QOS, STATUS_TOPIC
from stochlite_bringup.node_diagnostics import LOG_THROTTLE_S
from stochlite_bringup.run_health import HealthProblem, record_problem

from .onboard_runner import EpisodeReport

EPISODES_FILE = "hil_episodes.csv"  # in run_dir: one row per episode on the robot
CONTROL_RATE_FLOOR = 0.99  # of the loop rate: an episode acting slower is a health problem
LATE_ACK_FLOOR = 0.01  # of an episode's commands: more applied a tick late is a health problem
START_POLL_S = 0.2
ARM_ATTEMPTS = 3
ARM_RETRY_S = 2.0


@dataclass(frozen=True)
class EpisodeRow:
    """One row of ``hil_episodes.csv``."""

    episode: int
    epoch: int
    evaluation: bool
    episode_return: float
    env_steps: int
    policy_version: int
    wait_s: float  # from the end of the previous episode (or the start) to this one's first command
    commands: int
    duration_s: float
    control_rate_hz: float
    cycles: int
    missed_cycles: int
    watchdog_trips: int
    link_faults: int
    late_acks: int
    latency_p99_ms: float


def episode_problems(node: str, report: EpisodeReport, rate_hz: int) -> list[HealthProblem]:
    """What was wrong with an episode of ``node``'s robot: a control rate under the floor, watchdog trips, link
    faults, commands applied a tick late."""
    problems = []
    if not report.control_rate_hz >= CONTROL_RATE_FLOOR * rate_hz:
        problems.append(HealthProblem(node, "control rate", 1, f"{report.control_rate_hz:.1f} Hz in an episode "
                                      f"(under {CONTROL_RATE_FLOOR:.0%} of {rate_hz} Hz)"))
    for kind, count in (("watchdog trips in an episode", report.watchdog_trips),
                        ("link faults in an episode", report.link_faults)):
        if count:
            problems.append(HealthProblem(node, kind, count, f"at env step {report.env_steps}"))
    if report.late_acks > LATE_ACK_FLOOR * max(report.commands, 1):
        problems.append(HealthProblem(node, "late commands in an episode", report.late_acks,
                                      f"of {report.commands} at env step {report.env_steps}: the MCU applied them a "
                                      "tick late"))
    return problems


class OnboardAgent:
    """Runs the training through ``node`` (a DriverNode) and ``runner`` (``offer_policy``, ``resume_at``,
    ``run_episodes``: the leg's LoopProcess, or an OnboardRunner on this process's loop thread) for the robot of
    ``profile``; ``exit_code`` is set once the run ended. ``on_runner`` takes the runner's messages."""

    def __init__(self, node, params: dict, ns: str, profile, runner) -> None:
        self._node = node
        self._params = params
        self._profile = profile
        self._runner = runner
        self._run_dir = node.params["run_dir"]
        self._rate_hz = node.params["loop_rate_hz"]
        self.reports = EpisodeReporter(node, ns, params["marker_frame"], self._run_dir)
        self.exit_code: int | None = None
        self.env_steps = 0
        self.epoch = 0
        self.policy_version = 0
        self.rejected_policies = 0
        self.holds = 0
        self.episodes = 0
        self.warnings: list[str] = []  # of the current diagnostics period
        self._hold_started: float | None = None
        self._recorded_hold = 0
        self._last_end = self._begin_time = time.monotonic()
        self._last_report: EpisodeReport | None = None
        self._learner_compute = "unknown"
        self._messages: collections.deque[tuple] = collections.deque()
        self._message_ready = node.create_guard_condition(self._handle_messages)
        self._snapshots: collections.deque[Snapshot] = collections.deque(maxlen=1)
        self._snapshot_ready = threading.Event()
        self._stopping = threading.Event()
        self._loader = threading.Thread(target=self._load_policies, name="policy_loader", daemon=True)
        self._loader.start()
        node.create_subscription(Snapshot, POLICY_TOPIC, self._on_policy, SNAPSHOT_QOS)
        self._status: TrainingStatus | None = None
        if params["resume"]:
            node.create_subscription(TrainingStatus, STATUS_TOPIC, self._on_status, STATUS_QOS)
        self._start_timer = node.create_timer(START_POLL_S, self._start)
        if self._run_dir:
            self._episodes_file = Path(self._run_dir) / EPISODES_FILE
            if not params["resume"]:
                self._episodes_file.unlink(missing_ok=True)

    def on_runner(self, message: tuple) -> None:
        """The loop's reader thread: queue a runner message for the executor."""
        self._messages.append(message)
        self._message_ready.trigger()

    def stop(self, code: int, reason: str) -> None:
        """End the run: disarm, wait for the learner to acknowledge what was sent, set ``exit_code``."""
        if self.exit_code is not None:
            return
        (self._node.get_logger().info if code == 0 else self._node.get_logger().error)(f"stopping: {reason}")
        self._start_timer.cancel()
        self._node.loop.set_armed(False)
        self._stopping.set()
        self._snapshot_ready.set()
        self.reports.await_delivery()
        self.exit_code = code

    def diagnostics(self) -> dict[str, object]:
        """The runner's values for /diagnostics."""
        last = self._last_report
        return {"env_steps": self.env_steps, "epoch": self.epoch, "policy_version": self.policy_version,
                "episodes": self.episodes, "pacing_holds": self.holds, "holding": self._hold_started is not None,
                "rejected_policies": self.rejected_policies,
                "episode_control_rate_hz": round(last.control_rate_hz, 1) if last else "n/a",
                "episode_cmd_latency_p99_ms": round(last.latency_p99_ms, 3) if last else "n/a"}

    def take_warnings(self) -> list[str]:
        """The period's problems (episodes, a long pacing hold); cleared."""
        warnings, self.warnings = self.warnings, []
        if self._hold_started is not None:
            held_s = time.monotonic() - self._hold_started
            if held_s > self._params["policy_wait_warning_s"]:
                text = (f"learning stalled: the robot has waited {held_s:.0f} s for a policy newer than "
                        f"v{self.policy_version} (max_policy_lag {self._params['max_policy_lag']}; learner: "
                        f"{self._learner_compute})")
                warnings.append(text)
                self._node.get_logger().warning(text, throttle_duration_sec=LOG_THROTTLE_S)
                if self._recorded_hold != self.holds and self._run_dir:
                    self._recorded_hold = self.holds
                    record_stall(self._run_dir, self._node.get_name(), text)
        return warnings

    # --- start: the learner listening, resumed, armed -----------------------------------------------

    async def _start(self) -> None:
        node = self._node
        if not self.reports.learner_listening():
            node.get_logger().info("waiting for the learner to subscribe to the transitions",
                                   throttle_duration_sec=LOG_THROTTLE_S)
            return
        if self._params["resume"] and self._status is None:
            node.get_logger().info(f"resume: waiting for the learner's {STATUS_TOPIC}",
                                   throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._start_timer.cancel()
        for attempt in range(1, ARM_ATTEMPTS + 1):
            node.loop.set_armed(True)
            problem = await node.arming_problem()
            if not problem:
                break
            node.loop.set_armed(False)
            if attempt == ARM_ATTEMPTS:
                self.stop(1, f"the robot refused to arm {attempt} times, last: {problem}")
                return
            node.get_logger().warning(f"cannot arm (attempt {attempt} of {ARM_ATTEMPTS}): {problem}; trying "
                                      f"again in {ARM_RETRY_S:g} s")
            await node.wait_s(ARM_RETRY_S)
        if self._status is not None:
            self.env_steps, self.epoch = self._status.env_steps, self._status.epoch
            if self.epoch >= self._params["epochs"]:
                self.stop(0, f"nothing to resume: all {self._params['epochs']} epochs are done")
                return
            self._runner.resume_at(self.env_steps, self.epoch)
            node.get_logger().info(f"resuming at {self.env_steps} env steps after epoch {self.epoch}")
        self._last_end = time.monotonic()
        self._runner.run_episodes()
        node.get_logger().info("armed: the policy runs in the loop process")

    def _on_status(self, msg: TrainingStatus) -> None:
        self._status = msg

    # --- policy snapshots: checked and converted off the executor -------------------------------------

    def _on_policy(self, msg: Snapshot) -> None:
        self._snapshots.append(msg)
        self._snapshot_ready.set()

    def _load_policies(self) -> None:
        import torch  # never in the loop process
        from mdemorl_learner.agent_node import actor_from_snapshot

        torch.set_num_threads(1)

        while True:
            self._snapshot_ready.wait()
            self._snapshot_ready.clear()
            if self._stopping.is_set():
                return
            try:
                msg = self._snapshots.popleft()
            except IndexError:
                continue
            try:
                actor, self._learner_compute = actor_from_snapshot(msg, self._profile.obs_dim, self._profile.act_dim)
            except ValueError as error:
                self.rejected_policies += 1
                self._node.get_logger().warning(f"rejected policy snapshot v{msg.version} "
                                                f"({self.rejected_policies} so far): {error}")
                continue
            self.policy_version = msg.version
            self._runner.offer_policy(actor, msg.version)

    # --- the runner's messages -------------------------------------------------------------------------

    def _handle_messages(self) -> None:
        while self._messages:
            kind, *args = self._messages.popleft()
            if self.exit_code is not None:
                continue
            if kind == "batch":
                self.reports.publish_batches(args)
            elif kind == "hold":
                self.holds += 1
                self._hold_started = time.monotonic()
            elif kind == "begin":
                self._hold_started = None
                self._begin_time = time.monotonic()
                self._node.episode_began()
            elif kind == "episode":
                self._episode(args[0])
            elif kind == "failed":
                self.stop(1, args[0])

    def _episode(self, report: EpisodeReport) -> None:
        end = report.end
        self._last_report = report
        self.reports.publish_end(end)
        self.episodes += 1
        self.env_steps, self.epoch = report.env_steps, end.epoch
        now = time.monotonic()
        row = EpisodeRow(self.episodes, end.epoch, end.evaluation, round(end.episode_return, 4), report.env_steps,
                         report.policy_version, round(self._begin_time - self._last_end, 3), report.commands,
                         round(report.duration_s, 4), round(report.control_rate_hz, 2), report.cycles,
                         report.missed_cycles, report.watchdog_trips, report.link_faults, report.late_acks,
                         round(report.latency_p99_ms, 4))
        self._last_end = now
        self._write_row(row)
        for problem in episode_problems(self._node.get_name(), report, self._rate_hz):
            self.warnings.append(f"{problem.kind} x{problem.count}: {problem.detail}")
            if self._run_dir:
                record_problem(self._run_dir, problem)
        if end.evaluation:
            self._node.get_logger().info(
                f"epoch {end.epoch}: eval return {end.episode_return:.2f} (policy v{report.policy_version}, "
                f"{report.env_steps} env steps; {report.control_rate_hz:.1f} Hz, command latency p99 "
                f"{report.latency_p99_ms:.3f} ms)")
        if report.finished:
            self.stop(0, f"done: {end.epoch} epochs, {report.env_steps} env steps")

    def _write_row(self, row: EpisodeRow) -> None:
        if not self._run_dir:
            return
        values = asdict(row)
        new = not self._episodes_file.is_file()
        with self._episodes_file.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(values))
            if new:
                writer.writeheader()
            writer.writerow({k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()})
