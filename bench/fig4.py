"""Fig. 4 of the paper on our leg: M-DeMoRL against SAC, same seeds and settings.

    scripts/run.sh python bench/fig4.py [--epochs 20] [--seeds 0 1 2] [--jobs 2] [--paper-budget]

The paper trains 20 epochs of 1000 real steps and follows M-DeMoRL to 80 (--paper-budget). Writes
bench/results/fig4.csv and .png, and into summary.json: ``leg_steps_ratio_mdemorl_vs_sac`` (env steps
M-DeMoRL needs to reach SAC's final mean return, over the steps SAC needs; null if never reached) and
``leg_return_ratio_mdemorl_vs_sac`` (final mean returns; the paper reports 2). Not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from seed_curves import plot_seed_curves
from trainer_runs import (Run, add_budget_arguments, by_label, parse_budget, run_all, steps_to_reach, update_summary,
                          write_csv)

PAPER_EPOCHS = 80


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-budget", action="store_true", help=f"{PAPER_EPOCHS} epochs, as the paper")
    add_budget_arguments(parser, "fig4", epochs=20, seeds=[0, 1, 2])
    args = parse_budget(parser)
    epochs = PAPER_EPOCHS if args.paper_budget else args.epochs
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    runs = [Run("leg", algo, seed, algo, tuple(args.flags)) for algo in ("sac", "mdemorl") for seed in args.seeds]
    curves = run_all(runs, epochs, args.steps_per_epoch, args.jobs, Path(args.runs_dir), args.reuse, args.earlier)
    write_csv(results / f"{args.name}.csv", curves)

    steps = next(iter(curves.values())).steps
    mean = {label: np.mean(c, axis=0) for label, c in by_label(curves, "leg").items()}
    target = float(mean["sac"][-1])
    sac_steps, mdemorl_steps = (steps_to_reach(steps, mean[a], target) for a in ("sac", "mdemorl"))
    values = {
        "leg_steps_ratio_mdemorl_vs_sac": None if mdemorl_steps is None else round(mdemorl_steps / sac_steps, 3),
        "leg_return_ratio_mdemorl_vs_sac": round(float(mean["mdemorl"][-1]) / target, 3) if target else None,
    }
    budget = {"epochs": epochs, "steps_per_epoch": args.steps_per_epoch, "seeds": args.seeds, "flags": args.flags}
    update_summary(results, values, args.name, budget)
    plot_seed_curves(results / f"{args.name}.png", steps, by_label(curves, "leg"),
                     " ".join([f"leg: mdemorl vs sac, {len(args.seeds)} seeds", *args.flags]),
                     (target, "sac final mean return"))
    print(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
