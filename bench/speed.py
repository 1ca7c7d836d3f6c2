"""Benchmark: how close the planner and SAC come to this machine's peak, all measured in one run.

    scripts/run.sh python bench/speed.py [--threads 2] [--repeats 5] [--epoch]

* ``peak``: batched matmul (baddbmm [5, N, 200] x [5, 200, 200], the ensemble's hidden layers), best
  GFLOP/s over N, in float32 and bfloat16.
* ``model_layer_peak_fraction``: one hidden layer of the ensemble as ``imagine`` runs it (baddbmm on
  B*M/E rows per elite, then SiLU) against that peak: the SiLU's time bounds what the planner can reach.
* ``model_step_peak_fraction``: ``ProbabilisticEnsemble.step`` on B*M rows as the sampled rollouts call it
  (one elite per row, a Gaussian sample; the thin 23-wide input and 36-wide output layers included), its
  FLOP/s against that peak. The sampled rollouts are 85 % of the planner's FLOPs and nothing but these
  steps, so with the rest at the full peak the planner reaches at most 1 / (0.85 / step fraction + 0.15).
* ``planner``: ``DMDMPCPlanner.imagine`` on HalfCheetah's sizes (17 obs, 6 act), a 7x4x200 ensemble
  (5 elites), 2x256 actor and critics, M = 100, H = 15, in float32 and with bfloat16 autocast:
  imagined rows per second, converted to FLOP/s by counting every matmul (the shift model through all
  elites, B*M*H sampled rows through one elite each, the critic at x_H, the final mu rollout).
  ``planner_peak_fraction`` = planner FLOP/s / peak FLOP/s in the same dtype.
* ``sac``: updates per second of ``mdemorl_learner.sac.SAC`` in float32 and in bfloat16
  (``SACConfig.compute_dtype``) against ``plain_sac.PlainSAC`` (batch 256, 2x256): ``sac_update_speedup``
  (the faster dtype, named in ``sac_dtype``) and ``sac_update_speedup_float32``.
* ``fit``: the ensemble's fit on ``--fit-rows`` synthetic transitions for ``--fit-epochs`` epochs, training
  forward passes in float32 and in bfloat16: ``model_fit_bf16_speedup``.
* ``auto``: the planner, SAC and the fit also run in the dtype that ``auto`` resolves to on this host
  (``mdemorl_planner.compute``: a cached bfloat16/float32 matmul probe): ``auto_vs_best_{planner,sac,fit}``
  is its rate over the faster of float32 and bfloat16, which should be at least 0.9.
* ``--epoch``: wall-clock of one 1000-step mdemorl epoch on HalfCheetah-v5 at the paper's settings for
  the end of training (H = 15, M = 100, 10,000 start states), from the trainer CLI, after 10,000 random
  steps have filled D_ENV: ``epoch_wall_s``.

The process runs with the training processes' CPU settings (``mdemorl_planner.cpu_setup.configure_cpu``:
the thread count, and glibc keeping freed memory), so the plain SAC gets them too. Each measurement
alternates the variants ``--repeats`` times and keeps the median, so that load from other processes hits
all of them alike. Writes bench/results/speed_<cpu capability>.csv and .png
(e.g. ``speed_avx512``, ``speed_avx2``) and records its headline in bench/results/summary.json under that
name (machine, capability and date included; with --threads other than 2, the keys get a ``_<n>_threads``
suffix). Not a test.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch
from mdemorl_learner.sac import SAC, SACConfig
from mdemorl_planner.compute import cached_probe, isa_limits, resolve_dtype
from mdemorl_planner.cpu_setup import configure_cpu
from mdemorl_planner.dmd_mpc import DMDMPCPlanner, PlannerConfig
from mdemorl_planner.ensemble import ProbabilisticEnsemble
from plain_sac import PlainSAC
from seed_curves import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OBS, ACT, MODEL_HIDDEN, MODEL_LAYERS, MEMBERS, ELITES, SAC_HIDDEN = 17, 6, 200, 4, 7, 5, 256
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_THREADS = 2  # the cores of the machines here: the headline figures use all of them


def median_rate(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run each variant ``repeats`` times, interleaved; each call returns a rate. Median per variant."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            rates[name].append(run())
    return {name: statistics.median(r) for name, r in rates.items()}


def matmul_rate(dtype: torch.dtype, rows: int, seconds: float = 0.5, silu: bool = False) -> float:
    """GFLOP/s of baddbmm [E, rows, 200] x [E, 200, 200] + bias in ``dtype``; ``silu``: followed by the
    ensemble's in-place SiLU, as every hidden layer of the model is (its FLOPs are not counted)."""
    x = torch.randn(ELITES, rows, MODEL_HIDDEN).to(dtype)
    w = torch.randn(ELITES, MODEL_HIDDEN, MODEL_HIDDEN).to(dtype)
    b = torch.randn(ELITES, 1, MODEL_HIDDEN).to(dtype)

    def layer() -> None:
        h = torch.baddbmm(b, x, w)
        if silu:
            torch.nn.functional.silu(h, inplace=True)
    layer()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        layer()
        calls += 1
    return 2 * ELITES * rows * MODEL_HIDDEN ** 2 * calls / (time.perf_counter() - start) / 1e9


def mlp_flops(sizes: list[int]) -> int:
    """Multiply-adds x 2 of one row through a dense MLP with these layer sizes."""
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


MODEL_FLOPS = mlp_flops([OBS + ACT] + [MODEL_HIDDEN] * MODEL_LAYERS + [2 * (OBS + 1)])  # one row, one member


def imagine_flops(batch: int, horizon: int, samples: int) -> float:
    """Every matmul FLOP of ``DMDMPCPlanner.imagine`` for ``batch`` start states."""
    actor = mlp_flops([OBS, SAC_HIDDEN, SAC_HIDDEN, 2 * ACT])
    critic = 2 * mlp_flops([OBS + ACT, SAC_HIDDEN, SAC_HIDDEN, 1])
    shift = batch * horizon * (ELITES * MODEL_FLOPS + actor)  # deterministic: the mean of all elites
    sampled = batch * samples * horizon * MODEL_FLOPS  # eq. 12: one elite per row
    terminal = batch * samples * (actor + critic)  # V(x_H) = min Q(x_H, pi(x_H))
    final = batch * horizon * MODEL_FLOPS  # the mu rollout into D_MPC
    return float(shift + sampled + terminal + final)


def model_step_variants(rows: int, steps: int = 15) -> dict[str, Callable[[], float]]:
    """``steps`` stochastic ``ProbabilisticEnsemble.step`` calls on ``rows`` rows under the planner's autocast,
    per dtype: rows/s."""
    model = ProbabilisticEnsemble(OBS, ACT, MEMBERS, ELITES, MODEL_HIDDEN, MODEL_LAYERS)
    obs, act = torch.randn(rows, OBS), torch.rand(rows, ACT) * 2 - 1

    def variant(dtype: str) -> Callable[[], float]:
        def run() -> float:
            with PlannerConfig(compute_dtype=dtype).autocast():
                start = time.perf_counter()
                for _ in range(steps):
                    model.step(obs, act)
                return rows * steps / (time.perf_counter() - start)
        return run
    return {dtype: variant(dtype) for dtype in DTYPES}


def planner_variants(batch: int, horizon: int, samples: int, auto: str) -> dict[str, Callable[[], float]]:
    model = ProbabilisticEnsemble(OBS, ACT, MEMBERS, ELITES, MODEL_HIDDEN, MODEL_LAYERS)
    sac = SAC(OBS, ACT, SACConfig(hidden_size=SAC_HIDDEN))
    x0 = np.random.default_rng(0).standard_normal((batch, OBS)).astype(np.float32)

    def variant(dtype: str) -> Callable[[], float]:
        planner = DMDMPCPlanner(PlannerConfig(horizon=horizon, num_samples=samples, compute_dtype=dtype),
                                model, sac.policy_mean, sac.value)

        def run() -> float:
            start = time.perf_counter()
            planner.imagine(x0)
            return batch * samples * horizon / (time.perf_counter() - start)  # sampled rows per second
        return run
    return {**{dtype: variant(dtype) for dtype in DTYPES}, "auto": variant(auto)}


def sac_variants(auto: str, batch_size: int = 256, updates: int = 200) -> dict[str, Callable[[], float]]:
    rng = np.random.default_rng(0)
    data = {"obs": rng.standard_normal((batch_size, OBS)), "act": rng.uniform(-1, 1, (batch_size, ACT)),
            "reward": rng.standard_normal(batch_size), "next_obs": rng.standard_normal((batch_size, OBS)),
            "terminated": np.zeros(batch_size)}
    ours = {name: SAC(OBS, ACT, SACConfig(hidden_size=SAC_HIDDEN, batch_size=batch_size, compute_dtype=d))
            for name, d in {**{d: d for d in DTYPES}, "auto": auto}.items()}
    plain = PlainSAC(OBS, ACT, SAC_HIDDEN)
    tensors = [torch.as_tensor(data[k], dtype=torch.float32) for k in ("obs", "act", "reward", "next_obs",
                                                                       "terminated")]

    def timed(step: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(updates):
                step()
            return updates / (time.perf_counter() - start)
        return run
    variants = {f"mdemorl_{d}": timed(lambda agent=agent: agent.update(data)) for d, agent in ours.items()}
    return {**variants, "plain": timed(lambda: plain.update(*tensors))}


def model_fit_variants(rows: int, epochs: int, auto: str) -> dict[str, Callable[[], float]]:
    """The ensemble's fit on ``rows`` synthetic HalfCheetah-sized transitions, per training dtype: rows/s."""
    rng = np.random.default_rng(0)
    obs, act = rng.standard_normal((rows, OBS)), rng.uniform(-1, 1, (rows, ACT))
    next_obs = obs + 0.1 * np.tanh(obs @ rng.standard_normal((OBS, OBS)) + act @ rng.standard_normal((ACT, OBS)))
    data = [x.astype(np.float32) for x in (obs, act, obs[:, 0], next_obs)]

    def variant(dtype: str) -> Callable[[], float]:
        def run() -> float:
            model = ProbabilisticEnsemble(OBS, ACT, MEMBERS, ELITES, MODEL_HIDDEN, MODEL_LAYERS)
            start = time.perf_counter()
            model.fit(*data, max_epochs=epochs, max_epochs_since_improvement=epochs, compute_dtype=dtype)
            return rows * epochs / (time.perf_counter() - start)
        return run
    return {**{dtype: variant(dtype) for dtype in DTYPES}, "auto": variant(auto)}


WARMUP_EPOCHS = 10  # random steps until D_ENV holds the 10,000 start states of one paper-sized round


def epoch_wall_s(threads: int) -> float:
    """One 1000-step mdemorl epoch on HalfCheetah-v5 with the end-of-schedule settings, from the CLI.

    The run first collects 10,000 random steps (so that D_ENV holds 10,000 start states); the timed
    epoch after them has 1000 env steps, 1000 SAC updates, one ensemble fit on 11,000 transitions and one
    imagination round from 10,000 start states (H = 15, M = 100)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "mdemorl_learner.train", "--task", "HalfCheetah-v5", "--algo", "mdemorl",
               "--epochs", str(WARMUP_EPOCHS + 1), "--start-steps", str(WARMUP_EPOCHS * 1000),
               "--horizon-start", "15", "--horizon-end", "15", "--rollout-batch-start", "10000",
               "--rollout-batch-max", "10000", "--num-samples", "100", "--torch-threads", str(threads),
               "--out", out]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(Path(out) / "progress.csv", newline="") as f:
            wall = [float(row["wall_s"]) for row in csv.DictReader(f)]
        return wall[-1] - wall[-2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch intra-op threads; summary.json keys get a _<n>_threads suffix unless "
                             f"{DEFAULT_THREADS} (this machine's cores)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="planner start states per imagine() call")
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--sac-updates", type=int, default=200, help="SAC updates per timed run")
    parser.add_argument("--fit-rows", type=int, default=10_000, help="transitions in the timed ensemble fit")
    parser.add_argument("--fit-epochs", type=int, default=2, help="epochs of the timed ensemble fit")
    parser.add_argument("--epoch", action="store_true", help="also time one paper-settings HalfCheetah epoch")
    parser.add_argument("--name", default=None, help="results name; default speed_<cpu capability>")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args()
    configure_cpu(args.threads)
    capability = torch.backends.cpu.get_cpu_capability()
    name = args.name or f"speed_{capability.lower()}"
    auto = resolve_dtype("auto", cached_probe(torch.device("cpu")))
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)

    peak_rows = (2_000, 10_000)
    peak_variants = {f"{d}/{n}": (lambda d=d, n=n: matmul_rate(DTYPES[d], n)) for d in DTYPES for n in peak_rows}
    peaks = median_rate(peak_variants, args.repeats)
    peak = {d: max(peaks[f"{d}/{n}"] for n in peak_rows) for d in DTYPES}
    # the bound on the planner's fraction set by its hidden layers alone (rows per elite as in imagine())
    layer_rows = max(1, args.batch * args.samples // ELITES)
    layer = median_rate({d: (lambda d=d: matmul_rate(DTYPES[d], layer_rows, silu=True)) for d in DTYPES},
                        args.repeats)
    step_rows = min(args.batch * args.samples, PlannerConfig().max_batch_rows)  # one chunk of imagine()
    step_rows_per_s = median_rate(model_step_variants(step_rows), args.repeats)
    step = {d: step_rows_per_s[d] * MODEL_FLOPS / 1e9 for d in DTYPES}
    rows_per_s = median_rate(planner_variants(args.batch, args.horizon, args.samples, auto), args.repeats)
    flops_per_row = imagine_flops(args.batch, args.horizon, args.samples) / (args.batch * args.samples * args.horizon)
    planner_gflops = {d: rows_per_s[d] * flops_per_row / 1e9 for d in DTYPES}
    sac = median_rate(sac_variants(auto, updates=args.sac_updates), args.repeats)
    fit = median_rate(model_fit_variants(args.fit_rows, args.fit_epochs, auto), args.repeats)

    rows = [{"measure": f"peak_gflops_{d}", "value": round(peak[d], 1)} for d in DTYPES]
    rows += [{"measure": f"planner_rows_per_s_{d}", "value": round(rows_per_s[d])} for d in rows_per_s]
    rows += [{"measure": f"planner_gflops_{d}", "value": round(planner_gflops[d], 1)} for d in DTYPES]
    rows += [{"measure": f"planner_peak_fraction_{d}", "value": round(planner_gflops[d] / peak[d], 3)}
             for d in DTYPES]
    rows += [{"measure": f"model_layer_peak_fraction_{d}", "value": round(layer[d] / peak[d], 3)} for d in DTYPES]
    rows += [{"measure": f"model_step_peak_fraction_{d}", "value": round(step[d] / peak[d], 3)} for d in DTYPES]
    rows += [{"measure": f"sac_updates_per_s_{k}", "value": round(v, 1)} for k, v in sac.items()]
    rows += [{"measure": f"model_fit_rows_per_s_{d}", "value": round(fit[d])} for d in fit]
    best = max(DTYPES, key=lambda d: rows_per_s[d])
    headline = {"planner_peak_fraction": round(planner_gflops[best] / peak[best], 3), "planner_dtype": best,
                "planner_bf16_speedup": round(rows_per_s["bfloat16"] / rows_per_s["float32"], 2),
                "planner_peak_fraction_float32": round(planner_gflops["float32"] / peak["float32"], 3),
                "model_layer_peak_fraction": round(layer[best] / peak[best], 3),
                "model_step_peak_fraction": round(step[best] / peak[best], 3),
                "sac_update_speedup": round(max(sac[f"mdemorl_{d}"] for d in DTYPES) / sac["plain"], 2),
                "sac_dtype": max(DTYPES, key=lambda d: sac[f"mdemorl_{d}"]),
                "sac_update_speedup_float32": round(sac["mdemorl_float32"] / sac["plain"], 2),
                "model_fit_bf16_speedup": round(fit["bfloat16"] / fit["float32"], 2),
                "cpu_capability": capability, "auto_dtype": auto,
                "auto_vs_best_planner": round(rows_per_s["auto"] / max(rows_per_s[d] for d in DTYPES), 3),
                "auto_vs_best_sac": round(sac["mdemorl_auto"] / max(sac[f"mdemorl_{d}"] for d in DTYPES), 3),
                "auto_vs_best_fit": round(fit["auto"] / max(fit[d] for d in DTYPES), 3)}
    if args.epoch:
        headline["epoch_wall_s"] = round(epoch_wall_s(args.threads), 1)
    listed = {row["measure"] for row in rows}
    rows += [{"measure": k, "value": v} for k, v in headline.items() if k not in listed]
    with open(results / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["measure", "value"])
        writer.writeheader()
        writer.writerows(rows)

    summary_path = results / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    suffix = "" if args.threads == DEFAULT_THREADS else f"_{args.threads}_threads"
    summary[name + suffix] = {**headline, "measured": {"machine": machine(), "cpu_capability": capability,
                                                       "isa_limits": isa_limits(), "date": date.today().isoformat(),
                                                       "threads": args.threads}}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    plot(results / f"{name}.png", peak, {"model hidden layer + SiLU": layer, "model step (ensemble)": step,
                                              "DMD-MPC imagine()": planner_gflops}, sac, fit, args, auto)
    print(json.dumps(headline))
    return 0


def plot(path: Path, peak: dict, parts: dict[str, dict], sac: dict, fit: dict, args: argparse.Namespace,
         auto: str) -> None:
    """Left: GFLOP/s of the peak and of ``parts`` per dtype, labelled with their fraction of the peak."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, model) = plt.subplots(1, 3, figsize=(14, 4))
    x = np.arange(len(DTYPES))
    width = 0.8 / (len(parts) + 1)
    left.bar(x - 0.4 + width / 2, [peak[d] for d in DTYPES], width, label="batched matmul peak")
    for j, (label, gflops) in enumerate(parts.items(), start=1):
        offsets = x - 0.4 + (j + 0.5) * width
        left.bar(offsets, [gflops[d] for d in DTYPES], width, label=label)
        for offset, d in zip(offsets, DTYPES):
            left.text(offset, gflops[d], f"{gflops[d] / peak[d]:.0%}", ha="center", va="bottom", fontsize=8)
    left.set(xticks=x, xticklabels=list(DTYPES), ylabel="GFLOP/s",
             title=f"planner (B={args.batch}, M={args.samples}, H={args.horizon})")
    left.set_ylim(top=1.45 * max(peak.values()))  # room for the legend above the bars
    left.legend(fontsize=8, loc="upper left")
    right.bar([name.removeprefix("mdemorl_") for name in sac], list(sac.values()),
              color=["tab:green", "tab:olive", "tab:purple", "tab:grey"])
    best = max(v for k, v in sac.items() if k != "plain")
    right.tick_params(axis="x", labelsize=8)
    right.set(ylabel="SAC updates / s", title=f"SAC, batch 256, 2x256: {best / sac['plain']:.2f}x plain")
    model.bar(list(fit), list(fit.values()), color=["tab:blue", "tab:orange", "tab:purple"])
    model.set(ylabel="training rows / s", title=f"ensemble fit ({args.fit_rows} rows, {MEMBERS} members)")
    limits = ", ".join(f"{k}={v}" for k, v in isa_limits().items())  # e.g. an emulated AVX2 host
    fig.suptitle(f"{date.today().isoformat()}, {machine()}, {torch.backends.cpu.get_cpu_capability()}"
                 f"{f' ({limits})' if limits else ''}, {args.threads} threads; auto = {auto}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
