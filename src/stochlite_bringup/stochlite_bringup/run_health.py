"""The run's record of health problems (``run_dir/health.log``) and how the launcher's summary names them.

A node appends one line per problem as it reports it in /diagnostics: the serial driver each fault of a period
(a link fault, a fault counter that grew, e.g. ``watchdog_trips``), the learner each time its SAC updates per
real step fall behind the configured ratio. A line reads ``NODE: KIND +COUNT: DETAIL``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .node_table import HEALTH_FILE

LINE = re.compile(r"^(?P<node>[^:]+): (?P<kind>.+?) \+(?P<count>\d+): (?P<detail>.*)$")


@dataclass(frozen=True)
class HealthProblem:
    """One reported problem: ``count`` events of ``kind`` (e.g. 3 watchdog trips in one period)."""

    node: str
    kind: str
    count: int
    detail: str


def clear_health_records(run_dir: Path | str, resume: bool) -> None:
    """A new run starts with no health.log (the launcher and the launch files clear it); a resumed one keeps the
    problems of its earlier part."""
    if not resume:
        (Path(run_dir) / HEALTH_FILE).unlink(missing_ok=True)


def record_problem(run_dir: Path | str, problem: HealthProblem) -> None:
    """Append ``problem`` to the run's ``health.log``."""
    path = Path(run_dir) / HEALTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"{problem.node}: {problem.kind} +{problem.count}: {problem.detail}\n")


def read_problems(run_dir: Path | str) -> list[HealthProblem]:
    """The problems in the run's ``health.log``, oldest first (none without the file; unreadable lines skipped)."""
    path = Path(run_dir) / HEALTH_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    matches = (LINE.match(line) for line in lines)
    return [HealthProblem(m["node"], m["kind"], int(m["count"]), m["detail"]) for m in matches if m]


def describe_problems(problems: list[HealthProblem]) -> list[str]:
    """One phrase per node and kind, in order of first report: the total count, the reports, the first detail."""
    groups: dict[tuple[str, str], list[HealthProblem]] = {}
    for problem in problems:
        groups.setdefault((problem.node, problem.kind), []).append(problem)
    return [describe_group(group) for group in groups.values()]


def describe_group(group: list[HealthProblem]) -> str:
    """``group``: the reports of one node and kind."""
    first, total = group[0], sum(p.count for p in group)
    reports = f" over {len(group)} reports" if total != len(group) else ""
    return f"{first.node} {first.kind} x{total}{reports} (first: {first.detail})"
