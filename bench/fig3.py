"""Fig. 3 of the paper: the elite fraction p of M-DeMoRL on HalfCheetah, from 1 % to 100 %.

    scripts/run.sh python bench/fig3.py [--epochs 10] [--seeds 0] [--target 1000] [--jobs 2]

For each p, the epochs the mean evaluation return (over seeds, then trailing over ``--smooth``
evaluations) needs to reach ``--target`` (the paper's "epochs to reach a certain level of
performance"). Writes bench/results/fig3.csv and .png (curves, and epochs to target per p), and ``elite_best_p`` into summary.json: the p that reaches the target first (ties: the
higher final return; if none reaches it, the highest final return). Not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from seed_curves import machine
from trainer_runs import (Run, add_budget_arguments, by_label, parse_budget, run_all, steps_to_reach, trailing_mean,
                          update_summary, write_csv)

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
TASK = "HalfCheetah-v5"


def label(p: float) -> str:
    return f"p={p * 100:g}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--target", type=float, default=1000.0, help="evaluation return that counts as reached")
    parser.add_argument("--smooth", type=int, default=3,
                        help="evaluations in the trailing mean that must reach --target and that give the final return")
    add_budget_arguments(parser, "fig3", epochs=10, seeds=[0])
    args = parse_budget(parser)
    if args.smooth < 1:
        parser.error(f"--smooth {args.smooth}: must be at least 1")
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    runs = [Run(TASK, "mdemorl", seed, label(p), ("--elite-fraction", str(p), *args.flags))
            for p in args.fractions for seed in args.seeds]
    curves = run_all(runs, args.epochs, args.steps_per_epoch, args.jobs, Path(args.runs_dir), args.reuse,
                     args.earlier)
    write_csv(results / f"{args.name}.csv", curves)

    grouped = by_label(curves, TASK)
    mean = {p: trailing_mean(np.mean(grouped[label(p)], axis=0), args.smooth) for p in args.fractions}
    epochs_axis = np.arange(1, args.epochs + 1, dtype=float)
    to_target = {p: steps_to_reach(epochs_axis, mean[p], args.target) for p in args.fractions}
    reached = [p for p in args.fractions if to_target[p] is not None]
    best = (min(reached, key=lambda p: (to_target[p], -mean[p][-1])) if reached
            else max(args.fractions, key=lambda p: mean[p][-1]))
    budget = {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "seeds": args.seeds,
              "flags": args.flags, "target_return": args.target, "smooth": args.smooth,
              "epochs_to_target": {label(p): to_target[p] for p in args.fractions},
              "final_returns": {label(p): round(float(mean[p][-1]), 1) for p in args.fractions}}
    update_summary(results, {"elite_best_p": best}, args.name, budget)
    plot(results / f"{args.name}.png", epochs_axis, mean, to_target, args)
    print(json.dumps({"elite_best_p": best, **budget}))
    return 0


def plot(path: Path, epochs: np.ndarray, mean: dict, to_target: dict, args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for p, curve in mean.items():
        left.plot(epochs, curve, label=label(p))
    left.axhline(args.target, color="grey", ls=":", label=f"target {args.target:g}")
    left.set(xlabel="epoch (1000 real steps)", ylabel=f"evaluation return (trailing mean of {args.smooth})",
             title=f"{TASK}: elite fraction")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    names = [label(p) for p in mean]
    reached = [to_target[p] if to_target[p] is not None else np.nan for p in mean]
    positions = np.arange(len(names))  # numeric positions: a category whose bar is NaN would lose its tick
    right.bar(positions, np.nan_to_num(reached))
    right.set_xticks(positions, names)
    for i, value in enumerate(reached):
        right.text(i, 0 if np.isnan(value) else value, "not reached" if np.isnan(value) else f"{value:g}",
                   ha="center", va="bottom", fontsize=8)
    right.set(ylabel=f"epochs to reach {args.target:g}", title="acceleration")
    fig.suptitle(" ".join([f"Fig. 3 reproduction, {len(args.seeds)} seed(s) ({machine()})", *args.flags]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
