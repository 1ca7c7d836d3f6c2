"""When learning falls behind the robot, and the run's record of it (``run_dir/stalls.log``).

Algorithm 1 makes ``updates_per_step`` SAC updates per real step. A learner that makes fewer than half of them
over a whole epoch, or an agent that waits longer than its ``policy_wait_warning_s`` for a policy, is stalled: a
slow compute dtype for the host, an overloaded machine or a dead learner. Each stall is a WARN in the node's
log and /diagnostics and a line of ``stalls.log``, which the launcher's final summary repeats. Short of a stall,
the update ratio is behind while the updates the learner owes (the configured ratio times the real steps that
earned credit, less the updates made) exceed both ``RATIO_MARGIN`` of what it should have made and the backlog
that pacing allows: a WARN in /diagnostics, and a line of ``health.log`` at each onset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stochlite_bringup.node_table import STALLS_FILE

STALL_FRACTION = 0.5  # of the configured updates per real step
RATIO_MARGIN = 0.1  # the update ratio is behind once the learner owes more than this share of its updates
PACING_SNAPSHOTS = 2  # pacing lets the agent run this many snapshot periods ahead of the learner at most


@dataclass(frozen=True)
class EpochPace:
    """The SAC updates made while one epoch's real steps arrived."""

    epoch: int
    updates: int
    eligible_steps: int  # real steps of the epoch that earn update credit (past start_steps)
    epoch_steps: int
    seconds: float

    @property
    def updates_per_step(self) -> float:
        return self.updates / self.eligible_steps if self.eligible_steps else float("nan")

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.seconds if self.seconds > 0 else float("nan")


def update_ratio_stalled(pace: EpochPace, updates_per_step: float) -> bool:
    """True when every step of the epoch earned update credit and fewer than half the owed updates were made."""
    return (pace.eligible_steps == pace.epoch_steps > 0
            and pace.updates < STALL_FRACTION * updates_per_step * pace.eligible_steps)


def describe_update_stall(pace: EpochPace, updates_per_step: float, compute: str) -> str:
    return (f"epoch {pace.epoch}: {pace.updates_per_step:.2f} SAC updates per real step against "
            f"{updates_per_step:g} configured ({pace.updates} updates in {pace.seconds:.0f} s, "
            f"{pace.updates_per_s:.1f} updates/s; {compute})")


@dataclass(frozen=True)
class PaceSample:
    """The learner's counts since the run began."""

    credited_steps: int  # real steps that earned update credit (past start_steps)
    updates: int  # SAC updates

    def owed(self, updates_per_step: float) -> float:
        """Updates the configured ratio asks for and the learner has not made."""
        return updates_per_step * self.credited_steps - self.updates


def ratio_behind(pace: PaceSample, updates_per_step: float, policy_period_updates: int,
                 episode_backlog: int = 0) -> bool:
    """True when the learner owes more than :data:`RATIO_MARGIN` of the updates it should have made and more than
    the backlog pacing allows (:data:`PACING_SNAPSHOTS` snapshot periods of ``policy_period_updates``, plus
    ``episode_backlog`` real steps' updates when the robot waits only between episodes)."""
    owed = pace.owed(updates_per_step)
    allowed = PACING_SNAPSHOTS * policy_period_updates + updates_per_step * episode_backlog
    return owed > RATIO_MARGIN * updates_per_step * pace.credited_steps and owed > allowed


def describe_ratio_behind(pace: PaceSample, updates_per_step: float) -> str:
    """The measured and configured updates per real step so far (some step earned credit)."""
    return (f"{pace.updates / pace.credited_steps:.2f} SAC updates per real step against {updates_per_step:g} "
            f"configured ({pace.updates} updates for {pace.credited_steps} real steps: "
            f"{pace.owed(updates_per_step):.0f} owed)")


def record_stall(run_dir: Path | str, node: str, text: str) -> None:
    """Append one stall to the run's ``stalls.log``."""
    path = Path(run_dir) / STALLS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"{node}: {text}\n")

