"""Benchmark: the leg trained hardware-in-the-loop (the emulated MCU on a pty) against the lockstep simulation.

    scripts/run.sh python bench/hil_vs_sim.py [--epochs 10] [--seeds 0 1 2] [--paths sim,hil] [--summarize-only]

For each seed, one `mdemorl train robot:=leg sim:=pybullet` run (sim) and one hardware-in-the-loop run (hil):
`mdemorl emulate robot:=leg` in its own process group, then `mdemorl train robot:=leg sim:=none port:=<its pty>`,
then SIGINT to the emulator. Same seeds and budget, one run at a time so that neither starves the other.
Each run directory under --runs-dir keeps its logs and ``bench_run.json`` (exit code, wall-clock, health flag,
the emulator's missed ticks), so ``--summarize-only`` rebuilds every output from them without training.

Writes bench/results/hil_vs_sim.csv (path, seed, epoch, env_steps, eval_return, sac_updates, updates_per_step =
sac_updates / (env_steps - start_steps), nan before start_steps), .png (evaluation return against real steps;
the HIL runs' per-episode control rate) and _summary.json: the final-return ratio hil / sim, SAC updates per
real step of each path, the HIL episodes' control rate, missed cycles, command latency, watchdog trips and link
faults (from ``hil_episodes.csv``), the emulator's missed ticks, per-seed figures, the targets and whether each
was met (null where its figure could not be measured, e.g. a path not run), and the manifest. Not a test.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
from seed_curves import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PATHS = ("sim", "hil")
START_STEPS = 1000  # the learner's start_steps (config/learner.yaml): no SAC update before 1000 env transitions
RATE_HZ = 500  # the leg's control loop
BANNER_S = 60.0  # the emulator's first line must come within this
EMULATOR_STOP_S = 10.0  # after SIGINT, then SIGKILL
RUN_FILE = "bench_run.json"  # in each path's run directory: what the CSVs do not hold
UNHEALTHY = "WARNING: the run was not healthy"
EMULATOR_STOPPED = re.compile(r"stopped after (\d+) ticks \((\d+) missed = ([0-9.]+) %")
# figure -> (comparison, threshold); `met` in the summary is computed from these
TARGETS = {
    "return_ratio_hil_vs_sim": (">=", 0.9),
    "updates_per_step_relative_difference": ("<=", 0.1),  # |hil - sim| / sim: within 10 % of each other
    "control_rate_hz_p1": (">=", 495.0),
    "missed_pct": ("<=", 0.1),
    "cmd_latency_p99_ms": ("<=", 2.0),
    "watchdog_trips_in_episodes": ("==", 0),
}
COMPARE = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b}


def run_dirs(runs_dir: Path, path: str, seed: int) -> tuple[Path, Path]:
    """The run's own directory (logs, ``bench_run.json``, the pty link) and the launcher's run_dir inside it."""
    out = runs_dir / f"{path}_seed{seed}"
    return out, (out / "run" if path == "hil" else out)


def launcher(*words: str) -> list[str]:
    return [sys.executable, "-m", "stochlite_bringup.launcher", *words]


def train_command(path: str, seed: int, args: argparse.Namespace, out: Path, run_dir: Path) -> list[str]:
    where = ["sim:=none", f"port:={out / 'leg.pty'}"] if path == "hil" else ["sim:=pybullet"]
    return launcher("train", "robot:=leg", *where, f"epochs:={args.epochs}",
                    f"steps_per_epoch:={args.steps_per_epoch}", f"seed:={seed}", f"run_dir:={run_dir}")


def run_launcher(command: list[str], log_path: Path, env: dict[str, str]) -> tuple[int, str | None]:
    """Run ``mdemorl train``: stdout and stderr into ``log_path``; its exit code and the last stdout line starting
    with ``mdemorl: `` (the run's summary; None if there was none)."""
    last = None
    with open(log_path, "a") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if line.startswith("mdemorl: "):
                last = line.rstrip("\n")
        return proc.wait(), last


class Emulator:
    """``mdemorl emulate robot:=leg`` in its own process group, its output drained into ``log_path``."""

    def __init__(self, link: Path, log_path: Path, env: dict[str, str]):
        self.link, self.lines = link, []
        self.banner = threading.Event()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(launcher("emulate", "robot:=leg", f"link:={link}"), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, text=True, process_group=0)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:  # also keeps the pipe from filling while the emulator reports missed ticks
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.append(line.rstrip("\n"))
            if str(self.link) in line:
                self.banner.set()
        self.banner.set()  # the emulator ended: nobody waits for a banner that will not come

    def wait_for_banner(self) -> None:
        if not self.banner.wait(BANNER_S) or not any(str(self.link) in line for line in self.lines):
            raise RuntimeError(f"the emulator printed no banner with {self.link} within {BANNER_S:.0f} s "
                               f"(exit {self.proc.poll()}); see {self.log.name}")

    def stop(self) -> tuple[float | None, str | None]:
        """SIGINT to the group, SIGKILL after EMULATOR_STOP_S; its missed-tick percentage and stop line (None if it
        printed none)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=EMULATOR_STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5.0)
        self.log.close()
        stopped = next((line for line in reversed(self.lines) if EMULATOR_STOPPED.search(line)), None)
        return (float(EMULATOR_STOPPED.search(stopped).group(3)) if stopped else None), stopped


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_one(path: str, seed: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One run of ``path`` for ``seed``; writes and returns its ``bench_run.json`` record."""
    out, run_dir = run_dirs(Path(args.runs_dir), path, seed)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = train_command(path, seed, args, out, run_dir)
    record: dict = {"path": path, "seed": seed, "command": shlex.join(command), "date": date.today().isoformat()}
    start = time.monotonic()
    emulator = None
    try:
        if path == "hil":
            emulator = Emulator(out / "leg.pty", out / "emulator.txt", env)
            emulator.wait_for_banner()
        code, last = run_launcher(command, out / "log.txt", env)
    finally:
        if emulator is not None:
            record["emulator_missed_pct"], record["emulator_stop_line"] = emulator.stop()
    record.update(exit_code=code, wall_s=round(time.monotonic() - start, 1), summary_line=last,
                  healthy=last is not None and UNHEALTHY not in last)
    (out / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if code != 0:
        raise RuntimeError(f"{path} seed {seed} failed with exit code {code} after {record['wall_s']:.0f} s; "
                           f"see {out / 'log.txt'}")
    return record


def describe(record: dict, final_eval_return: float) -> str:
    """One line on a finished run: its wall-clock, final evaluation return, health and the emulator's misses."""
    emulator = (f", emulator missed {record['emulator_missed_pct']} % of its ticks" if record["path"] == "hil"
                else "")
    return (f"  {record['path']} seed {record['seed']}: {record['wall_s']:.0f} s, final eval return "
            f"{final_eval_return:.1f}, {'healthy' if record['healthy'] else 'NOT healthy'}{emulator}")


def updates_per_step(row: dict[str, str]) -> float:
    real = float(row["env_steps"]) - START_STEPS
    return float(row["sac_updates"]) / real if real > 0 else float("nan")


def figure(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for the summary; None where it is not a number (JSON has no nan)."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def relative_difference(a: float | None, b: float | None) -> float | None:
    return abs(a - b) / b if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: sim, hil or both")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 78)),
                        help="ROS_DOMAIN_ID of the runs (default: the environment's, else 78)")
    parser.add_argument("--name", default="hil_vs_sim", help="file stem of the CSV, PNG and summary")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--runs-dir", default=str(HERE.parent / "runs" / "bench" / "hil_vs_sim"),
                        help="per-run directories (logs, checkpoints); not committed")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: rebuild the CSV, PNG and summary from the runs already in --runs-dir")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - set(PATHS):
        parser.error(f"--paths {args.paths}: choose from {', '.join(PATHS)}")
    paths = [p for p in PATHS if p in paths]
    import torch
    from mdemorl_planner.compute import _cpu_model

    results, runs_dir = Path(args.results_dir), Path(args.runs_dir)
    results.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    records: dict[tuple[str, int], dict] = {}
    if args.summarize_only:
        for seed in args.seeds:
            for path in paths:
                out = run_dirs(runs_dir, path, seed)[0]
                if not (out / RUN_FILE).is_file():
                    parser.error(f"--summarize-only: no finished {path} run for seed {seed} ({out / RUN_FILE})")
                records[path, seed] = json.loads((out / RUN_FILE).read_text())
                if records[path, seed]["exit_code"] != 0:
                    parser.error(f"--summarize-only: the {path} run for seed {seed} failed (exit "
                                 f"{records[path, seed]['exit_code']}); see {out / 'log.txt'}")
    else:
        total = len(paths) * len(args.seeds)
        print(f"{total} runs of {args.epochs} x {args.steps_per_epoch} steps on the leg ({', '.join(paths)}), "
              f"one at a time, ROS_DOMAIN_ID {args.domain_id}", flush=True)
        for seed in args.seeds:
            for path in paths:
                print(f"  [{len(records) + 1}/{total}] {path} seed {seed} ...", flush=True)
                records[path, seed] = run_one(path, seed, args, env)
                final = read_csv(run_dirs(runs_dir, path, seed)[1] / "progress.csv")[-1]["eval_return"]
                print(describe(records[path, seed], float(final)), flush=True)

    rows, curves, steps, episodes = [], {p: [] for p in paths}, None, {}
    for (path, seed), record in records.items():
        progress = read_csv(run_dirs(runs_dir, path, seed)[1] / "progress.csv")
        if len(progress) != args.epochs:
            raise SystemExit(f"{path} seed {seed}: {len(progress)} epochs in progress.csv, not --epochs {args.epochs}")
        rows += [{"path": path, "seed": seed, "epoch": r["epoch"], "env_steps": r["env_steps"],
                  "eval_return": r["eval_return"], "sac_updates": r["sac_updates"],
                  "updates_per_step": updates_per_step(r)} for r in progress]
        curves[path].append(np.array([float(r["eval_return"]) for r in progress]))
        steps = np.array([float(r["env_steps"]) for r in progress])
        record["final_eval_return"] = float(progress[-1]["eval_return"])
        record["final_updates_per_step"] = updates_per_step(progress[-1])
        if path == "hil":
            episodes[seed] = read_csv(run_dirs(runs_dir, path, seed)[1] / "hil_episodes.csv")
        if args.summarize_only:
            print(describe(record, record["final_eval_return"]), flush=True)
    with open(results / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def mean_over_seeds(path: str, key: str) -> float | None:
        values = [records[path, s][key] for s in args.seeds if (path, s) in records]
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(values)) if values else None

    def per_episode(key: str, seeds: list[int] | None = None) -> np.ndarray:
        return np.array([float(e[key]) for s, rows_ in episodes.items() if seeds is None or s in seeds
                         for e in rows_])

    def p1(rates: np.ndarray) -> float | None:
        return float(np.percentile(rates, 1)) if len(rates) else None

    both = all(p in paths for p in PATHS)
    finals = {p: [records[p, s]["final_eval_return"] for s in args.seeds] for p in PATHS if p in paths}
    # the mean final return over seeds on hardware over that in simulation (not a mean of per-seed ratios)
    ratio = float(np.mean(finals["hil"]) / np.mean(finals["sim"])) if both and np.mean(finals["sim"]) else None
    ups = {p: mean_over_seeds(p, "final_updates_per_step") if p in paths else None for p in PATHS}
    cycles = per_episode("cycles").sum()
    latencies = per_episode("latency_p99_ms")
    figures = {
        "return_ratio_hil_vs_sim": figure(ratio),
        "updates_per_step_hil": figure(ups["hil"]),
        "updates_per_step_sim": figure(ups["sim"]),
        "updates_per_step_relative_difference": figure(relative_difference(ups["hil"], ups["sim"])),
        "control_rate_hz_p1": figure(p1(per_episode("control_rate_hz")), 2),
        "missed_pct": figure(100.0 * per_episode("missed_cycles").sum() / cycles if cycles else None, 4),
        # not the max: the 99th percentile over HIL episodes of each episode's own p99 state -> command latency
        "cmd_latency_p99_ms": figure(float(np.percentile(latencies, 99)) if len(latencies) else None, 4),
        "watchdog_trips_in_episodes": int(per_episode("watchdog_trips").sum()) if episodes else None,
        "link_faults_in_episodes": int(per_episode("link_faults").sum()) if episodes else None,
        # commands the MCU applied a tick late (its next state did not acknowledge them), over all HIL commands
        "late_commands_pct": figure(100.0 * per_episode("late_acks").sum() / per_episode("commands").sum()
                                    if episodes else None, 3),
        "emulator_missed_pct": figure(mean_over_seeds("hil", "emulator_missed_pct") if "hil" in paths else None),
    }
    per_seed = [{"seed": s,
                 "final_eval_return": {p: figure(records[p, s]["final_eval_return"], 2) for p in paths},
                 "updates_per_step": {p: figure(records[p, s]["final_updates_per_step"]) for p in paths},
                 "healthy": {p: records[p, s]["healthy"] for p in paths},
                 "control_rate_hz_p1_hil": figure(p1(per_episode("control_rate_hz", [s])), 2) if "hil" in paths
                 else None} for s in args.seeds]
    measured = [records[key] for key in records]
    summary = {
        **figures,
        "per_seed": per_seed,
        "targets": {key: {"op": op, "value": value} for key, (op, value) in TARGETS.items()},
        "met": {key: None if figures[key] is None else bool(COMPARE[op](figures[key], value))
                for key, (op, value) in TARGETS.items()},
        "manifest": {
            "command_line": shlex.join(["python", *sys.argv]),
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "date": date.today().isoformat(),
            "machine": machine(), "cpu_model": _cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "summarize_only": args.summarize_only,
            "run_dates": sorted({r["date"] for r in measured}),
            "paths": paths, "seeds": args.seeds, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
            "start_steps": START_STEPS,
            "wall_s": {p: [records[p, s]["wall_s"] for s in args.seeds] for p in paths},
            "commands": {p: records[p, args.seeds[0]]["command"] for p in paths},
        },
    }
    (results / f"{args.name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results / f"{args.name}.png", steps, curves, episodes, summary)
    print(json.dumps(summary, indent=2))
    return 0


def git(*words: str) -> str | None:
    """The output of a read-only git command in this repository (None if git cannot answer)."""
    try:
        return subprocess.run(["git", "-C", str(HERE.parent), *words], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def plot(path: Path, steps: np.ndarray, curves: dict[str, list[np.ndarray]], episodes: dict[int, list[dict]],
         summary: dict) -> None:
    """Left: evaluation return against real steps, each seed faint and the mean over seeds. Right: each HIL
    episode's control rate, per seed (training episodes filled, evaluation episodes hollow), with the target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = summary["manifest"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for run in runs:
            ax0.plot(steps, run, color=color, alpha=0.25, lw=1)
        ax0.plot(steps, np.mean(runs, axis=0), "o-", color=color, label=f"{label} (mean of {len(runs)} seeds)"
                 if len(runs) > 1 else f"{label} (1 seed)")
    ax0.set(xlabel="real environment steps", ylabel="evaluation return",
            title=f"leg: hardware-in-the-loop vs simulation, return ratio {summary['return_ratio_hil_vs_sim']}")
    ax0.grid(alpha=0.3)
    ax0.legend()
    for i, (seed, rows) in enumerate(episodes.items()):
        for evaluation, marker, kind in (("False", "o", "training"), ("True", "s", "evaluation")):
            shown = [r for r in rows if r["evaluation"] == evaluation]
            ax1.plot([int(r["episode"]) for r in shown], [float(r["control_rate_hz"]) for r in shown], marker,
                     color=f"C{i}", mfc="none" if evaluation == "True" else None, ms=4,
                     label=f"seed {seed}, {kind} episodes")
    op, target = TARGETS["control_rate_hz_p1"]
    ax1.axhline(RATE_HZ, color="grey", lw=1, label=f"{RATE_HZ} Hz loop")
    ax1.axhline(target, color="r", ls=":", label=f"target: 1st percentile {op} {target:g} Hz")
    ax1.set(xlabel="episode on the robot", ylabel="episode control rate [Hz]",
            title=f"HIL episodes: p1 {summary['control_rate_hz_p1']} Hz, {summary['missed_pct']} % cycles missed"
            if episodes else "no hardware-in-the-loop runs")
    ax1.grid(alpha=0.3)
    if episodes:
        ax1.legend()
    fig.suptitle(f"{manifest['date']}, {manifest['machine']}, {manifest['cpu_model']} "
                 f"({manifest['cpu_capability']}), {manifest['epochs']} x {manifest['steps_per_epoch']} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
