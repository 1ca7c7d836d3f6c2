"""Fig. 2 of the paper: sac, mbpo, mopac and mdemorl on the MuJoCo tasks, same code, seeds and settings.

    scripts/run.sh python bench/fig2.py [--tasks HalfCheetah-v5 ...] [--epochs 30] [--seeds 0 1] [--jobs 2]

The default budget (30 epochs of 1000 steps, 2 seeds: HalfCheetah learns only after about 18,000 steps)
takes about an hour per task on this 2-core machine with ``--jobs 2``;
``--paper-budget`` runs MBPO's epochs per task (HalfCheetah 400, Hopper 125, Walker2d 300, Ant 300) with
3 seeds. ``--task-seeds Hopper-v5=0,1`` gives one task its own seeds (with ``--reuse``, tasks run in
different sessions combine into one figure). Writes bench/results/fig2.csv and .png (one panel per task),
and into summary.json ``halfcheetah_return_<algo>`` for every algorithm: the mean over seeds of each run's
last ``--final-window`` evaluations (one deterministic episode each) at the common budget; and, per task,
the paper's "faster reward progress": the env steps after which mdemorl stays at or above the final return
of the better of mbpo and mopac, over the same for that baseline
(``halfcheetah_steps_ratio_mdemorl_vs_best_model_based``; below 1 / 1.3 = 0.77 is the paper's 30 %). Not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from seed_curves import machine
from trainer_runs import (Run, add_budget_arguments, by_label, final_return, parse_budget, run_all, steps_to_stay,
                          task_steps, trailing_mean, update_summary, write_csv)

TASKS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
ALGOS = ("sac", "mbpo", "mopac", "mdemorl")
MODEL_BASED_BASELINES = ("mbpo", "mopac")
PAPER_EPOCHS = {"HalfCheetah-v5": 400, "Hopper-v5": 125, "Walker2d-v5": 300, "Ant-v5": 300}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--paper-budget", action="store_true", help="MBPO's epochs per task and 3 seeds")
    parser.add_argument("--task-seeds", nargs="+", default=[], metavar="TASK=S[,S...]",
                        help="seeds of one task instead of --seeds, e.g. Hopper-v5=0,1 (budgets differ by task)")
    parser.add_argument("--final-window", type=int, default=5,
                        help="evaluations averaged into a run's final return (the last N epochs)")
    add_budget_arguments(parser, "fig2", epochs=30, seeds=[0, 1])
    args = parse_budget(parser)
    if args.final_window < 1:
        parser.error(f"--final-window {args.final_window}: must be at least 1")
    seeds = [0, 1, 2] if args.paper_budget else args.seeds
    task_seeds = {task: seeds for task in args.tasks} | parse_task_seeds(parser, args.task_seeds, args.tasks)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    curves = {}
    for task in args.tasks:  # one task at a time: tasks differ in epochs under --paper-budget
        epochs = PAPER_EPOCHS[task] if args.paper_budget else args.epochs
        runs = [Run(task, algo, seed, algo, tuple(args.flags)) for algo in args.algos for seed in task_seeds[task]]
        curves.update(run_all(runs, epochs, args.steps_per_epoch, args.jobs, Path(args.runs_dir), args.reuse,
                              args.earlier))
    write_csv(results / f"{args.name}.csv", curves)

    finals = {task: {label: float(np.mean([final_return(c, args.final_window) for c in runs]))
                     for label, runs in by_label(curves, task).items()}
              for task in args.tasks}
    progress = {task: progress_against_best_baseline(curves, task, args.final_window) for task in args.tasks}
    values = {f"{task.split('-')[0].lower()}_return_{algo}": round(finals[task][algo], 1)
              for task in args.tasks for algo in args.algos if task == "HalfCheetah-v5"}
    if progress.get("HalfCheetah-v5"):
        values["halfcheetah_steps_ratio_mdemorl_vs_best_model_based"] = progress["HalfCheetah-v5"]["steps_ratio"]
    budget = {"epochs": "paper" if args.paper_budget else args.epochs, "steps_per_epoch": args.steps_per_epoch,
              "seeds": task_seeds, "flags": args.flags, "final_window": args.final_window,
              "final_returns": finals, "progress_vs_best_model_based": progress}
    update_summary(results, values, args.name, budget)
    plot(results / f"{args.name}.png", curves, args.tasks, args.flags, progress)
    print(json.dumps({"final_returns": finals, "progress_vs_best_model_based": progress}))
    return 0


def progress_against_best_baseline(curves: dict, task: str, window: int) -> dict | None:
    """How much faster mdemorl's reward progresses than the better of mbpo and mopac on ``task``.

    Curves are seed means, trailing-averaged over ``window`` evaluations (so their last point is the final
    return). The target is the better baseline's final return; ``steps_ratio`` is the env steps after which
    mdemorl's curve stays at or above it, over the same for that baseline (null if mdemorl ends below it).
    None when the task's runs lack mdemorl or both baselines.
    """
    grouped = by_label(curves, task)
    baselines = [algo for algo in MODEL_BASED_BASELINES if algo in grouped]
    if "mdemorl" not in grouped or not baselines:
        return None
    steps = task_steps(curves, task)
    mean = {algo: trailing_mean(np.mean(grouped[algo], axis=0), window) for algo in [*baselines, "mdemorl"]}
    best = max(baselines, key=lambda algo: mean[algo][-1])
    target = float(mean[best][-1])
    best_steps, mdemorl_steps = (steps_to_stay(steps, mean[algo], target) for algo in (best, "mdemorl"))
    return {"baseline": best, "target_return": round(target, 1), "baseline_steps": best_steps,
            "mdemorl_steps": mdemorl_steps,
            "steps_ratio": None if mdemorl_steps is None else round(mdemorl_steps / best_steps, 3)}


def parse_task_seeds(parser: argparse.ArgumentParser, items: list[str], tasks: list[str]) -> dict[str, list[int]]:
    """``TASK=S[,S...]`` items -> {task: seeds}; a parser error names a malformed item or a task not run."""
    parsed = {}
    for item in items:
        task, _, seeds = item.partition("=")
        try:
            parsed[task] = [int(s) for s in seeds.split(",")]
        except ValueError:
            parser.error(f"--task-seeds {item!r}: write TASK=S[,S...], e.g. Hopper-v5=0,1")
        if task not in tasks:
            parser.error(f"--task-seeds {item!r}: {task!r} is not among --tasks ({', '.join(tasks)})")
    return parsed


def plot(path: Path, curves: dict, tasks: list[str], flags: list[str], progress: dict[str, dict | None]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(max(4.5 * len(tasks), 8), 4), squeeze=False)  # room for the title
    for ax, task in zip(axes[0], tasks):
        steps = task_steps(curves, task)
        for label, runs in by_label(curves, task).items():
            runs = np.array(runs)
            ax.plot(steps, runs.mean(0), label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
            ax.fill_between(steps, runs.min(0), runs.max(0), alpha=0.15)
        if progress[task]:
            reached = progress[task]
            ratio = "never" if reached["steps_ratio"] is None else f"{reached['steps_ratio']:.2f}x the steps"
            ax.axhline(reached["target_return"], color="grey", linestyle=":",
                       label=f"{reached['baseline']} final (mdemorl: {ratio})")
        ax.set(title=task, xlabel="real environment steps", ylabel="evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(" ".join([f"Fig. 2 reproduction ({machine()})", *flags]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
