"""Benchmark: sac against mdemorl on the 2R leg, several seeds, run side by side with the same settings.

    python bench/leg_sample_efficiency.py [--epochs 15] [--seeds 0 1 2] [--algos sac mdemorl] [--jobs 2]

Each run is the single-process trainer CLI in its own process (one torch thread each, `--jobs` at a time).
Writes bench/results/leg_sample_efficiency.csv (every epoch of every run), .png (mean ± min/max over
seeds) and _summary.json: the env steps each algorithm needs to reach SAC's final reward, and wall-clock
per epoch. Not a test: machines here are shared, so compare the ratios measured in one run.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
from seed_curves import machine, plot_seed_curves

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def add_run_arguments(parser: argparse.ArgumentParser, name: str, epochs: int, runs_subdir: str) -> None:
    """The flags every learning benchmark takes: algos, seeds, budget, jobs, output places, trainer flags after --."""
    parser.add_argument("--algos", nargs="+", default=["sac", "mdemorl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    parser.add_argument("--name", default=name, help="file stem of the results")
    parser.add_argument("--results-dir", default=str(RESULTS), help="where the results go")
    parser.add_argument("--runs-dir", default=str(HERE.parent / "runs" / runs_subdir),
                        help="where the per-run directories (checkpoints, logs) go; not committed")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more trainer flags for every run")


def run_one(algo: str, seed: int, args: argparse.Namespace, out_root: Path) -> Path:
    """One trainer process; its stdout/stderr go to a log beside its run directory."""
    out = out_root / f"{algo}_seed{seed}"
    cmd = [sys.executable, "-m", "mdemorl_learner.train", "--task", args.task, "--algo", algo,
           "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch), "--seed", str(seed),
           "--out", str(out), "--torch-threads", "1", *args.extra]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "w") as log:
        start = time.monotonic()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"  {algo} seed {seed}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
    if code != 0:
        raise RuntimeError(f"{algo} seed {seed} failed; see {out / 'log.txt'}")
    return out / "progress.csv"


def run_all(args: argparse.Namespace) -> dict[tuple[str, int], list[dict[str, str]]]:
    """Every (algo, seed) of ``args`` through :func:`run_one`, ``args.jobs`` at a time; their progress.csv rows."""
    runs = [(a, s) for a in args.algos for s in args.seeds]
    print(f"{len(runs)} runs of {args.epochs} x {args.steps_per_epoch} steps on {args.task}, {args.jobs} at a time",
          flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        paths = dict(zip(runs, pool.map(lambda r: run_one(*r, args, Path(args.runs_dir)), runs)))
    progress = {}
    for run, path in paths.items():
        with open(path, newline="") as f:
            progress[run] = list(csv.DictReader(f))
    return progress


def write_rows(path: Path, progress: dict[tuple[str, int], list[dict[str, str]]]) -> None:
    """All runs' progress rows in one CSV, each prefixed with its algo and seed."""
    rows = [{"algo": algo, "seed": seed, **r} for (algo, seed), data in progress.items() for r in data]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def steps_to_reach(steps: np.ndarray, returns: np.ndarray, target: float) -> float | None:
    """First env-step count at which the return reaches target (None if never)."""
    hit = np.nonzero(returns >= target)[0]
    return float(steps[hit[0]]) if len(hit) else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="leg")
    add_run_arguments(parser, "leg_sample_efficiency", epochs=15, runs_subdir="bench")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    progress = run_all(args)

    curves, walls = {}, {}
    for (algo, seed), data in progress.items():
        curves.setdefault(algo, []).append(np.array([float(r["eval_return"]) for r in data]))
        wall = np.array([float(r["wall_s"]) for r in data])
        walls.setdefault(algo, []).append(float(np.diff(np.concatenate([[0.0], wall])).mean()))
        steps = np.array([float(r["env_steps"]) for r in data])
    write_rows(results / f"{args.name}.csv", progress)

    mean = {a: np.mean(c, axis=0) for a, c in curves.items()}
    baseline = "sac" if "sac" in mean else args.algos[0]
    target = float(mean[baseline][-1])
    summary = {
        "machine": machine(),
        "date": date.today().isoformat(), "task": args.task, "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch, "seeds": args.seeds, "extra_flags": args.extra,
        "target": f"{baseline} final mean eval return", "target_return": target,
        "steps_to_target": {a: steps_to_reach(steps, m, target) for a, m in mean.items()},
        "final_eval_return_mean": {a: float(m[-1]) for a, m in mean.items()},
        "wall_s_per_epoch": {a: float(np.mean(w)) for a, w in walls.items()},
    }
    (results / f"{args.name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    plot_seed_curves(results / f"{args.name}.png", steps, curves,
                     f"{args.task}: {' vs '.join(args.algos)} ({summary['date']}, {summary['machine']})",
                     (target, f"{baseline} final return"))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
