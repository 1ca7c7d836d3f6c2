"""Benchmark: the ROS 2 graph against the single-process trainer, same algorithm, budget and seeds.

    python bench/graph_vs_single.py [--epochs 10] [--seeds 0 1 2] [--robot leg]

For each seed, one `mdemorl train` run (five processes over DDS, lockstep simulation) and one
`python -m mdemorl_learner.train` run (mdemorl, one process), one run at a time so that neither
starves the other. Writes bench/results/graph_vs_single.csv (every epoch of every run), .png (mean and
min/max over seeds) and _summary.json: final and mean-of-last-3 evaluation returns per mode, the
difference of the means against the seed-to-seed spread, and wall-clock per epoch. Not a test.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from seed_curves import machine, plot_seed_curves

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODES = ("graph", "single")


def command(mode: str, robot: str, seed: int, args: argparse.Namespace, out: Path) -> list[str]:
    if mode == "graph":
        return ["mdemorl", "train", f"robot:={robot}", f"sim:={'pybullet' if robot == 'leg' else 'mujoco'}",
                f"epochs:={args.epochs}", f"steps_per_epoch:={args.steps_per_epoch}", f"seed:={seed}",
                f"run_dir:={out}"]
    return [sys.executable, "-m", "mdemorl_learner.train", "--task", robot, "--algo", "mdemorl",
            "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch), "--seed", str(seed),
            "--out", str(out)]


def run_one(mode: str, seed: int, args: argparse.Namespace) -> list[dict[str, str]]:
    """One run; returns its progress rows. Its output goes to log.txt in its run directory."""
    out = Path(args.runs_dir) / f"{args.robot}_{mode}_seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    start = time.monotonic()
    with open(out / "log.txt", "w") as log:
        code = subprocess.call(command(mode, args.robot, seed, args, out), stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    print(f"  {mode} seed {seed}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
    if code != 0:
        raise RuntimeError(f"{mode} seed {seed} failed with exit code {code}; see {out / 'log.txt'}")
    with open(out / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="leg", help="leg or a gymnasium MuJoCo id")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--domain-id", type=int, default=77, help="ROS_DOMAIN_ID of the graph runs")
    parser.add_argument("--name", default="graph_vs_single", help="file stem of the CSV, PNG and summary")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--runs-dir", default=str(HERE.parent / "runs" / "bench"),
                        help="per-run directories (logs, checkpoints); not committed")
    args = parser.parse_args()
    if shutil.which("mdemorl") is None:
        parser.error("`mdemorl` is not on PATH: run inside the project environment (scripts/run.sh python ...)")
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    print(f"{len(MODES) * len(args.seeds)} runs of {args.epochs} x {args.steps_per_epoch} steps on {args.robot}, "
          "one at a time", flush=True)
    rows, curves, walls = [], {m: [] for m in MODES}, {m: [] for m in MODES}
    for seed in args.seeds:
        for mode in MODES:
            data = run_one(mode, seed, args)
            rows += [{"mode": mode, "seed": seed, **{k: r[k] for k in ("epoch", "env_steps", "eval_return",
                                                                      "mpc_transitions", "sac_updates", "wall_s")}}
                     for r in data]
            curves[mode].append(np.array([float(r["eval_return"]) for r in data]))
            walls[mode].append(float(data[-1]["wall_s"]) / len(data))
    steps = np.array([float(r["env_steps"]) for r in data])
    with open(results / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    final = {m: np.array([c[-1] for c in curves[m]]) for m in MODES}
    last3 = {m: np.array([c[-3:].mean() for c in curves[m]]) for m in MODES}
    spread = float(np.sqrt((last3["graph"].var(ddof=1) + last3["single"].var(ddof=1)) / len(args.seeds))) \
        if len(args.seeds) > 1 else float("nan")
    difference = float(last3["graph"].mean() - last3["single"].mean())
    summary = {
        "machine": machine(),
        "date": date.today().isoformat(), "robot": args.robot, "algo": "mdemorl", "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch, "seeds": args.seeds,
        "final_eval_return": {m: final[m].round(1).tolist() for m in MODES},
        "last3_eval_return_mean": {m: round(float(last3[m].mean()), 1) for m in MODES},
        "last3_difference_graph_minus_single": round(difference, 1),
        "last3_difference_standard_error": round(spread, 1),
        "within_noise": bool(abs(difference) <= 2.0 * spread),
        "wall_s_per_epoch": {m: round(float(np.mean(walls[m])), 1) for m in MODES},
    }
    (results / f"{args.name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    labels = {m: f"{m}, {summary['wall_s_per_epoch'][m]} s/epoch" for m in MODES}
    plot_seed_curves(results / f"{args.name}.png", steps, {labels[m]: curves[m] for m in MODES},
                     f"mdemorl on {args.robot}: ROS 2 graph vs single process\n{summary['date']}, {summary['machine']}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
