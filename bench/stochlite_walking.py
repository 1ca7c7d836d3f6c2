"""Benchmark: how many episodes sac and mdemorl need until StochLite walks up a 5 degree slope.

    python bench/stochlite_walking.py [--epochs 60] [--seeds 0 1 2] [--algos sac mdemorl] [--jobs 2]

One epoch = ``--steps-per-epoch`` real steps (default 1000 = one 1000-step episode at 100 Hz).
After each epoch the trainer runs a deterministic evaluation episode (default slope: the ground
rises 5 degrees ahead) and logs ``eval_forward_speed``: distance along the slope over the whole
episode's 10 s, so falling early counts as standing still. The robot **walks** once that speed
is at least ``--walk-speed`` (default 0.2 m/s, 2 m in 10 s; measured over 10 s, the open-loop
trot makes 0.089 m/s with the policy's action at 0 and 0.266 m/s with the best constant action
found: docs/stochlite.md).
One evaluation episode per epoch is a noisy figure (a policy that walked 0.3 m/s may stand the
next epoch), so the summary also has the fraction of all evaluations that walked, and each run's
final policy evaluated in ``--final-episodes`` fresh episodes (speeds, their mean, and the
fraction that walked), and the episodes until walking was sustained: the mean of ``--window``
consecutive evaluations at the walk speed or more. ``--summarize-only`` redoes the summary, plot and GIF from finished runs.
Writes bench/results/stochlite_walking.csv (every epoch of every run), .png (mean, min..max
over seeds of the evaluation speed), _summary.json (episodes until walking per run) and
_gait.gif: frames of the first seed's last policy of the first algorithm that walked (else the
last algorithm), rendered with PyBullet's software renderer. Runs are single-process trainer
CLIs (trainer_runs.run_all), one torch thread each. SAC's temperature starts at the task's 0.05
(``stochlite_bringup.tasks.task_init_alpha``), not 1.0: see docs/stochlite.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
from seed_curves import machine, plot_seed_curves
from trainer_runs import Run, add_budget_arguments, parse_budget, read_curve, run_all, run_dir, write_csv

TASK = "stochlite"


def episodes_until_walking(env_steps: np.ndarray, speeds: np.ndarray, walk_speed: float,
                           episode_steps: int) -> float | None:
    """Real episodes (env steps / episode length) before the first evaluation at ``walk_speed`` or more."""
    hit = np.nonzero(speeds >= walk_speed)[0]
    return float(env_steps[hit[0]] / episode_steps) if len(hit) else None


def episodes_until_sustained_walking(env_steps: np.ndarray, speeds: np.ndarray, walk_speed: float,
                                     episode_steps: int, window: int) -> float | None:
    """Real episodes before the first ``window`` consecutive evaluations whose mean speed is ``walk_speed`` or more."""
    if len(speeds) < window:
        return None
    means = np.convolve(speeds, np.ones(window) / window, mode="valid")  # means[i] covers evaluations i..i+window-1
    hit = np.nonzero(means >= walk_speed)[0]
    return float(env_steps[hit[0] + window - 1] / episode_steps) if len(hit) else None


def load_policy(checkpoint: Path):
    """The SAC agent saved in a trainer checkpoint."""
    import torch
    from mdemorl_learner.sac import SAC, SACConfig

    state = torch.load(checkpoint, weights_only=False)["sac"]
    agent = SAC(state["obs_dim"], state["act_dim"], SACConfig(**state["config"]))
    agent.load_state_dict(state)
    return agent


def policy_speeds(checkpoint: Path, episodes: int, episode_steps: int) -> list[float]:
    """Forward speed [m/s] of the checkpoint's deterministic policy in ``episodes`` fresh episodes (env seeds
    20000, 20001, ...; distance along the slope over the whole episode's duration, as ``eval_forward_speed``)."""
    from stochlite_bringup.tasks.stochlite_env import StochliteEnv

    agent = load_policy(checkpoint)
    speeds = []
    for episode in range(episodes):
        env = StochliteEnv(episode_steps=episode_steps, seed=20_000 + episode)
        try:
            obs, _ = env.reset()
            distance = 0.0
            for _ in range(episode_steps):
                obs, _, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
                distance += info["forward_speed"] * env.dt
                if terminated or truncated:
                    break
        finally:
            env.close()
        speeds.append(distance / (episode_steps * env.dt))
    return speeds


def render_gait(checkpoint: Path, out_gif: Path, steps: int, every: int) -> int:
    """Run the checkpoint's deterministic policy for ``steps`` steps; every ``every``-th frame into a GIF."""
    from PIL import Image
    from stochlite_bringup.tasks.stochlite_env import StochliteEnv

    agent = load_policy(checkpoint)
    env = StochliteEnv(episode_steps=steps, seed=0, render_mode="rgb_array")
    frames = []
    try:
        obs, _ = env.reset()
        for step in range(steps):
            obs, _, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            if step % every == 0:
                frames.append(Image.fromarray(env.render()))
            if terminated or truncated:
                break
    finally:
        env.close()
    frames[0].save(out_gif, save_all=True, append_images=frames[1:], duration=round(1000 * every * env.dt), loop=0)
    return len(frames)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["sac", "mdemorl"])
    parser.add_argument("--walk-speed", type=float, default=0.2, help="m/s over a whole evaluation episode")
    parser.add_argument("--window", type=int, default=5,
                        help="evaluations averaged for sustained walking (one evaluation alone is noisy)")
    parser.add_argument("--gif-steps", type=int, default=300, help="control steps rendered (100 per second)")
    parser.add_argument("--final-episodes", type=int, default=5,
                        help="fresh evaluation episodes of each run's final policy (a steadier figure than one)")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: summarise the finished runs already in --runs-dir")
    add_budget_arguments(parser, "stochlite_walking", epochs=60, seeds=[0, 1, 2])  # paper: under 60 episodes
    args = parse_budget(parser)
    if args.walk_speed <= 0.0:
        parser.error(f"--walk-speed {args.walk_speed} must be positive (m/s)")
    if args.window < 1:
        parser.error(f"--window {args.window} must be at least 1 evaluation")
    episode_steps = int(args.flags[args.flags.index("--episode-steps") + 1]) if "--episode-steps" in args.flags \
        else 1000
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    runs = [Run(TASK, algo, seed, algo, tuple(args.flags)) for seed in args.seeds for algo in args.algos]  # seed-major: every round compares
    progress = ({run: read_curve(run_dir(Path(args.runs_dir), run)) for run in runs} if args.summarize_only
                else run_all(runs, args.epochs, args.steps_per_epoch, args.jobs, Path(args.runs_dir), args.reuse,
                             args.earlier))

    curves, until, sustained, last = {}, {}, {}, {}
    for run, curve in progress.items():
        speeds = np.array([float(r["eval_forward_speed"]) for r in curve.rows])
        curves.setdefault(run.algo, []).append(speeds)
        until.setdefault(run.algo, {})[run.seed] = episodes_until_walking(curve.steps, speeds, args.walk_speed,
                                                                          episode_steps)
        sustained.setdefault(run.algo, {})[run.seed] = episodes_until_sustained_walking(
            curve.steps, speeds, args.walk_speed, episode_steps, args.window)
        last.setdefault(run.algo, {})[run.seed] = round(float(np.mean(speeds[-args.window:])), 4)
    steps = next(iter(progress.values())).steps
    write_csv(results / f"{args.name}.csv", progress)

    final = {run: policy_speeds(run_dir(Path(args.runs_dir), run) / "checkpoints" / "latest.pt", args.final_episodes,
                                episode_steps) for run in runs}
    walked = [a for a in args.algos if until[a][args.seeds[0]] is not None]
    shown = walked[0] if walked else args.algos[-1]
    frames = render_gait(run_dir(Path(args.runs_dir), Run(TASK, shown, args.seeds[0], shown)) / "checkpoints" / "latest.pt",
                         results / f"{args.name}_gait.gif", args.gif_steps, every=5)
    summary = {
        "machine": machine(), "date": date.today().isoformat(), "task": TASK, "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch, "episode_steps": episode_steps, "seeds": args.seeds,
        "extra_flags": args.flags, "walk_speed_m_per_s": args.walk_speed,
        "episodes_until_walking": until,
        "sustained_window": args.window,
        "episodes_until_sustained_walking": sustained,
        "last_window_speed_mean": last,
        "final_eval_forward_speed_mean": {a: float(np.mean([c[-1] for c in cs])) for a, cs in curves.items()},
        "best_eval_forward_speed": {a: float(np.max(cs)) for a, cs in curves.items()},
        "walking_evaluations_fraction": {a: float(np.mean(np.concatenate(cs) >= args.walk_speed))
                                         for a, cs in curves.items()},
        "final_policy_speeds": {a: {run.seed: [round(v, 4) for v in final[run]] for run in runs if run.algo == a}
                                for a in args.algos},
        "final_policy_speed_mean": {a: float(np.mean([final[run] for run in runs if run.algo == a]))
                                    for a in args.algos},
        "final_policy_walking_fraction": {a: float(np.mean([np.array(final[run]) >= args.walk_speed
                                                            for run in runs if run.algo == a])) for a in args.algos},
        "gif": {"algo": shown, "seed": args.seeds[0], "frames": frames},
    }
    (results / f"{args.name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_seed_curves(results / f"{args.name}.png", steps, curves,
                     f"{TASK}, 5° slope: {' vs '.join(args.algos)} ({summary['date']}, {summary['machine']})",
                     (args.walk_speed, "walking"), ylabel="evaluation forward speed [m/s]")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
