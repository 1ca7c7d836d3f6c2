"""What the reproduction benchmarks share: trainer runs in parallel processes, their curves, summary.json.

Each run is the single-process trainer CLI (`python -m mdemorl_learner.train`) in its own process with
one torch thread; its directory (progress.csv, log.txt, checkpoints) goes under the runs directory,
which is not committed.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from seed_curves import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = HERE.parent / "runs" / "bench"
FINISHED = "finished_command.json"  # in a run directory: the trainer arguments of the run that completed there


@dataclass(frozen=True)
class Run:
    """One trainer run: ``label`` names its curve (e.g. the algorithm, or ``p=10%``)."""

    task: str
    algo: str
    seed: int
    label: str
    flags: tuple[str, ...] = field(default=())


@dataclass
class Curve:
    """The evaluation returns of one run, one per epoch, the env steps at each, and all of progress.csv."""

    steps: np.ndarray
    returns: np.ndarray
    wall_s: np.ndarray
    rows: list[dict[str, str]]


def add_budget_arguments(parser: argparse.ArgumentParser, name: str, epochs: int, seeds: list[int]) -> None:
    """The flags every learning benchmark takes: budget, seeds, parallel runs, where results go, and trainer
    flags after ``--`` (read them with :func:`parse_budget`)."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--seeds", nargs="+", type=int, default=seeds)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    parser.add_argument("--name", default=name, help="file stem of the results")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--runs-dir", default=str(RUNS), help="per-run directories (not committed)")
    parser.add_argument("--reuse", action="store_true",
                        help="read runs already finished with the same arguments instead of rerunning them "
                             "(e.g. to summarize again with another --target)")
    parser.add_argument("--reuse-csv", type=Path, default=None, metavar="CSV",
                        help="read runs not finished under --runs-dir from this earlier results CSV of the same "
                             "script, matched by task, label, seed, trainer flags and epoch count (a CSV without a "
                             "flags column, from before it was written, matches any flags), e.g. to add a seed when "
                             "the run directories are gone")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="after --: more trainer flags for every run")


def parse_budget(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments, with the trainer flags after ``--`` in ``flags`` and the curves of
    ``--reuse-csv`` in ``earlier`` (None without it)."""
    args = parser.parse_args()
    args.flags = [flag for flag in args.flags if flag != "--"]
    args.earlier = None
    if args.reuse_csv is not None:
        if not args.reuse_csv.is_file():
            parser.error(f"--reuse-csv {args.reuse_csv}: no such file; name a results CSV such as "
                         "bench/results/fig2.csv")
        try:
            args.earlier = curves_from_csv(args.reuse_csv)
        except (KeyError, ValueError) as err:
            parser.error(f"--reuse-csv {args.reuse_csv}: cannot read earlier runs ({err})")
    return args


def run_dir(runs_dir: Path, run: Run) -> Path:
    """The directory of ``run`` under ``runs_dir``: ``TASK/LABEL_seedN``."""
    return runs_dir / run.task / f"{run.label}_seed{run.seed}".replace("%", "pct").replace("=", "")


def curve_of(rows: list[dict[str, str]]) -> Curve:
    """The :class:`Curve` of one run's progress.csv rows."""
    return Curve(*(np.array([float(r[k]) for r in rows]) for k in ("env_steps", "eval_return", "wall_s")), rows)


def read_curve(out: Path) -> Curve:
    """The :class:`Curve` of the finished run in ``out`` (its progress.csv)."""
    with open(out / "progress.csv", newline="") as f:
        return curve_of(list(csv.DictReader(f)))


RUN_COLUMNS = ("task", "label", "algo", "seed", "flags")  # what write_csv puts before each progress.csv row
RunKey = tuple[str, str, int, str | None]  # task, label, seed, trainer flags (None: not recorded)


def flags_text(run: Run) -> str:
    """``run``'s trainer flags as the flags column holds them."""
    return " ".join(run.flags)


def curves_from_csv(path: Path) -> dict[RunKey, Curve]:
    """The curves in a results CSV written by :func:`write_csv`, keyed by (task, label, seed, flags); flags is
    None in a CSV written before the column was."""
    grouped: dict[RunKey, list[dict[str, str]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["task"], row["label"], int(row["seed"]), row.get("flags"))
            grouped.setdefault(key, []).append({k: v for k, v in row.items() if k not in RUN_COLUMNS})
    return {key: curve_of(rows) for key, rows in grouped.items()}


def run_all(runs: list[Run], epochs: int, steps_per_epoch: int, jobs: int, runs_dir: Path,
            reuse: bool = False, earlier: dict[RunKey, Curve] | None = None) -> dict[Run, Curve]:
    """Every run, ``jobs`` at a time; raises naming the run and its log if one fails.

    ``reuse``: a run whose directory holds a finished run of the same command is read, not rerun.
    ``earlier`` (from :func:`curves_from_csv`): a run not finished there is taken from these curves when one
    has the same task, label, seed and flags (or recorded none) and ``epochs`` evaluations."""
    print(f"{len(runs)} runs of {epochs} x {steps_per_epoch} steps, {jobs} at a time", flush=True)

    def one(run: Run) -> Curve:
        out = run_dir(runs_dir, run)
        out.mkdir(parents=True, exist_ok=True)
        cmd = ["-m", "mdemorl_learner.train", "--task", run.task, "--algo", run.algo,
               "--epochs", str(epochs), "--steps-per-epoch", str(steps_per_epoch), "--seed", str(run.seed),
               "--out", str(out), "--torch-threads", "1", *run.flags]
        finished = out / FINISHED
        if reuse and finished.is_file() and json.loads(finished.read_text()) == cmd:
            print(f"  {run.task} {run.label} seed {run.seed}: reused {out}", flush=True)
            return read_curve(out)
        earlier_runs = earlier or {}
        recorded = earlier_runs.get((run.task, run.label, run.seed, flags_text(run)),
                                    earlier_runs.get((run.task, run.label, run.seed, None)))
        if recorded is not None and len(recorded.returns) == epochs:
            print(f"  {run.task} {run.label} seed {run.seed}: read from the earlier results CSV", flush=True)
            return recorded
        finished.unlink(missing_ok=True)
        start = time.monotonic()
        with open(out / "log.txt", "w") as log:
            code = subprocess.call([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT)
        print(f"  {run.task} {run.label} seed {run.seed}: exit {code} after {time.monotonic() - start:.0f} s",
              flush=True)
        if code != 0:
            raise RuntimeError(f"{run.task} {run.label} seed {run.seed} failed; see {out / 'log.txt'}")
        finished.write_text(json.dumps(cmd))
        return read_curve(out)

    with ThreadPoolExecutor(jobs) as pool:
        return dict(zip(runs, pool.map(one, runs)))


def write_csv(path: Path, curves: dict[Run, Curve]) -> None:
    """One row per epoch of every run: the run's task, label, algo, seed and trainer flags, then its progress.csv
    row."""
    rows = [{"task": run.task, "label": run.label, "algo": run.algo, "seed": run.seed, "flags": flags_text(run),
             **row} for run, curve in curves.items() for row in curve.rows]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def by_label(curves: dict[Run, Curve], task: str) -> dict[str, list[np.ndarray]]:
    """The return curves of one task, grouped by label (one array per seed)."""
    grouped: dict[str, list[np.ndarray]] = {}
    for run, curve in curves.items():
        if run.task == task:
            grouped.setdefault(run.label, []).append(curve.returns)
    return grouped


def task_steps(curves: dict[Run, Curve], task: str) -> np.ndarray:
    """The env-step axis of one task's curves (all its runs share the budget)."""
    return next(curve.steps for run, curve in curves.items() if run.task == task)


def final_return(returns: np.ndarray, window: int) -> float:
    """The mean of the last ``window`` evaluations: one evaluation episode swings by hundreds on HalfCheetah."""
    return float(np.mean(returns[-window:]))


def trailing_mean(returns: np.ndarray, window: int) -> np.ndarray:
    """Element i: the mean of evaluations max(0, i - window + 1) .. i."""
    sums = np.concatenate([[0.0], np.cumsum(returns)])
    ends = np.arange(1, len(returns) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def steps_to_reach(steps: np.ndarray, returns: np.ndarray, target: float) -> float | None:
    """First env-step count at which ``returns`` reaches ``target`` (None if never)."""
    hit = np.nonzero(returns >= target)[0]
    return float(steps[hit[0]]) if len(hit) else None


def steps_to_stay(steps: np.ndarray, returns: np.ndarray, target: float) -> float | None:
    """First env-step count from which ``returns`` stays at or above ``target`` (None if it ends below).

    Unlike :func:`steps_to_reach`, a curve that starts high and dips (Ant's standing still scores about 960
    before learning to move) has not reached a target it passed only at the start."""
    below = np.nonzero(returns < target)[0]
    if not len(below):
        return float(steps[0])
    return float(steps[below[-1] + 1]) if below[-1] + 1 < len(returns) else None


def update_summary(results: Path, values: dict, section: str, budget: dict) -> None:
    """Merge headline ``values`` into results/summary.json with the machine, date and budget of ``section``."""
    path = results / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary.update(values)
    summary[f"{section}_measured"] = {"machine": machine(), "date": date.today().isoformat(), **budget}
    path.write_text(json.dumps(summary, indent=2) + "\n")
