"""The policy runner inside a driver's loop: a command in the same cycle as the state that caused it.

:class:`OnboardRunner` runs :class:`~mdemorl_learner.policy_runner.PolicyRunner` episodes on a driver's loop
(the leg's :class:`~leg_driver.control_loop.ControlLoop` in its own process, StochLite's
:class:`~leg_driver.position_loop.PositionLoop`). The loop calls :meth:`OnboardRunner.command` with each new valid
state before it answers, and applies what it returns in that cycle. The robot's profile
(:mod:`~leg_driver.runner_profiles`) turns the state into the task's sample at the episode time of the cycle (its
index times the period, so every step is one period of the loop, as in the lockstep simulation), and the action
into the command.

Between episodes the robot is reset (the leg homed to the start of the foot path, StochLite stood up) and held
there. The next
episode starts once the runner's pacing allows it (``episode``: the newest policy within ``max_policy_lag`` of
the data), with the newest policy the parent has offered: policies are swapped only between episodes. Messages
to the parent (``send``): ``("batch", Batch)`` as transitions fill a batch; ``("begin", env_steps, version,
evaluating)`` at each episode's first command; ``("hold", env_steps, version)`` when pacing starts to hold the
robot; ``("episode", EpisodeReport)`` at each episode's end; ``("failed", reason)`` when the reset fails or the
runner raises (it then stops). Imports no torch and no ROS.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mdemorl_learner.numpy_actor import NumpyActor
from mdemorl_learner.policy_runner import EpisodeEnd, PolicyRunner

from .loop_timing import NS_PER_S
from .mcu_loop import McuLoop, ResetRequest

IDLE, RESETTING, WAITING, RUNNING, DONE = "idle", "resetting", "waiting", "running", "done"
RUNNER_MESSAGES = ("batch", "begin", "hold", "episode", "failed")  # the kinds it sends its parent


@dataclass(frozen=True)
class RunnerSettings:
    """The runner's settings (the agent's, ``config/agent.yaml``)."""

    episode_steps: int
    steps_per_epoch: int
    epochs: int
    start_steps: int
    transitions_per_batch: int
    seed: int
    pacing: str
    max_policy_lag: int


@dataclass(frozen=True)
class EpisodeReport:
    """One finished episode as the loop saw it, with the runner's counts after it.

    ``duration_s`` spans the episode's commands; ``latency_p99_ms`` is the 99th percentile of the time from a
    state's arrival to its command; the counters are the loop's growth over the episode.
    """

    end: EpisodeEnd
    env_steps: int
    finished: bool
    policy_version: int
    commands: int
    duration_s: float
    cycles: int
    missed_cycles: int
    watchdog_trips: int
    link_faults: int
    late_acks: int  # states whose MCU had not applied the last command before it: that step's action came late
    latency_p99_ms: float

    @property
    def control_rate_hz(self) -> float:
        """Commands per second over the episode (nan for fewer than two)."""
        return (self.commands - 1) / self.duration_s if self.commands > 1 and self.duration_s > 0 else float("nan")


class OnboardRunner:
    """Episodes of the policy runner on ``loop`` for the robot of ``profile``: :meth:`run_episodes` resets the robot
    and begins; ``send`` gets the messages of the module docstring. :meth:`command` runs on the loop's thread, the rest
    on the caller's."""

    def __init__(self, settings: RunnerSettings, profile, loop: McuLoop, send: Callable[[tuple], None]) -> None:
        s = settings
        self.settings = s
        self.profile = profile
        self.runner = PolicyRunner(profile.act_dim, s.episode_steps, s.steps_per_epoch, s.epochs, s.start_steps,
                                   s.transitions_per_batch, s.seed, s.pacing, s.max_policy_lag)
        self.phase = IDLE
        self._loop = loop
        self._send = send
        self._policy: tuple[NumpyActor | None, int] = (None, 0)  # in use for the current episode
        self._offered: tuple[NumpyActor | None, int] = (None, 0)  # the newest from the parent
        self._reset: ResetRequest | None = None
        self._holding = False
        self._lock = threading.Lock()  # start/stop against the loop thread's phase changes
        self._start_cycle = 0
        self._start_ns = 0
        self._last_ns = 0
        self._latencies_ns: list[int] = []
        self._counts_at_start: tuple[int, ...] = ()

    def offer_policy(self, actor: NumpyActor, version: int) -> None:
        """The newest policy; it takes over at the next episode's start."""
        self._offered = (actor, version)

    def resume_at(self, env_steps: int, epoch: int) -> None:
        """Continue a run (see :meth:`PolicyRunner.resume_at`); before :meth:`start`."""
        self.runner.resume_at(env_steps, epoch)

    def run_episodes(self) -> None:
        """Reset the robot and run episodes until the last evaluation (the loop must be armed)."""
        with self._lock:
            if self.phase in (IDLE, DONE) and not self.runner.finished:
                self._start_reset()

    def stop(self) -> None:
        """Run no further commands (the loop's hold or watchdog takes over)."""
        with self._lock:
            self.phase = IDLE

    def command(self, state, now_ns: int) -> tuple[float, ...] | None:
        """The loop's hook for each new valid state: the command to apply this cycle, or None (hold, reset)."""
        with self._lock:
            try:
                if self.phase == RESETTING:
                    self._reset_done()
                if self.phase == WAITING:
                    self._maybe_begin(now_ns)
                return self._step(state, now_ns) if self.phase == RUNNING else None
            except Exception as error:  # the loop must go on (and hold the robot safe); the run ends, saying why
                self.phase = IDLE
                self._send(("failed", f"the policy runner failed: {error!r}"))
                return None

    def _start_reset(self) -> None:
        self.phase = RESETTING
        self._reset = self.profile.start_reset(self._loop)

    def _reset_done(self) -> None:
        request = self._reset
        if not request.done.is_set():
            return
        if request.ok:
            self.phase = WAITING
        else:
            self.phase = IDLE
            self._send(("failed", f"the reset before an episode failed: {request.message}"))

    def _maybe_begin(self, now_ns: int) -> None:
        self._policy = self._offered  # swapped only here, between episodes
        actor, version = self._policy
        self.runner.start_episode()
        if self.runner.must_wait(version):
            if not self._holding:
                self._holding = True
                self._send(("hold", self.runner.env_steps, version))
            return
        self._holding = False
        self.profile.start_episode()
        self.phase = RUNNING
        self._start_ns = self._last_ns = now_ns
        self._latencies_ns = []
        loop = self._loop
        self._start_cycle = loop.clock.cycle
        self._counts_at_start = (loop.clock.missed, loop.watchdog_trips, loop.link_faults, loop.late_acks)
        self._send(("begin", self.runner.env_steps, version, self.runner.evaluating))

    def _step(self, state, now_ns: int) -> tuple[float, ...] | None:
        clock = self._loop.clock
        time_s = (clock.cycle - self._start_cycle) * clock.period_ns / NS_PER_S
        sample = self.profile.sample(state, time_s)
        actor, version = self._policy
        step = self.runner.step(sample, actor, version)
        for batch in self.runner.take_batches(flush=step.episode_end is not None):
            self._send(("batch", batch))
        if step.episode_end is not None:
            self._end_episode(step.episode_end, version)
            return None
        command = self.profile.command(step.action, time_s)
        self._last_ns = now_ns
        self._latencies_ns.append(time.monotonic_ns() - now_ns)
        return command

    def _end_episode(self, end: EpisodeEnd, version: int) -> None:
        loop = self._loop
        missed0, trips0, faults0, late0 = self._counts_at_start
        latencies = self._latencies_ns
        self._send(("episode", EpisodeReport(
            end, self.runner.env_steps, self.runner.finished, version, len(latencies),
            (self._last_ns - self._start_ns) / NS_PER_S, loop.clock.cycle - self._start_cycle,
            loop.clock.missed - missed0, loop.watchdog_trips - trips0, loop.link_faults - faults0,
            loop.late_acks - late0, float(np.percentile(latencies, 99)) / 1e6 if latencies else float("nan"))))
        self._start_reset()  # held at the start until the next episode (or, after the last, the disarm)
        if self.runner.finished:
            self.phase = DONE
