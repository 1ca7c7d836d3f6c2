"""Smoke runs of the benchmark scripts, so that they do not rot. Tiny budgets: no figure here means anything."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
TINY = ["--start-steps", "50", "--batch-size", "16", "--hidden-size", "16", "--model-hidden", "16",
        "--ensemble-size", "2", "--num-elites", "1", "--model-max-epochs", "2", "--rollout-batch-start", "4",
        "--rollout-batch-max", "4", "--num-samples", "6", "--horizon-start", "2", "--horizon-end", "2",
        "--model-train-freq", "100", "--episode-steps", "50"]


def run_bench(script: str, tmp_path: Path, *args: str, flags: tuple[str, ...] = ()) -> dict:
    """Run a bench script with a tiny budget (and trainer ``flags``) into tmp_path; return what it printed last
    (JSON)."""
    proc = subprocess.run([sys.executable, str(HERE / script), *args, "--name", "smoke", "--results-dir",
                           str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--jobs", "2", "--", *TINY, *flags],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def csv_rows(tmp_path: Path) -> int:
    return len((tmp_path / "smoke.csv").read_text().splitlines()) - 1


@pytest.mark.integration
def test_fig4_smoke(tmp_path):
    printed = run_bench("fig4.py", tmp_path, "--epochs", "2", "--steps-per-epoch", "100", "--seeds", "0")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(printed) <= set(summary) and "leg_return_ratio_mdemorl_vs_sac" in printed
    assert summary["smoke_measured"]["epochs"] == 2 and csv_rows(tmp_path) == 2 * 2  # 2 algos x 2 epochs


@pytest.mark.integration
def test_fig2_smoke(tmp_path):
    printed = run_bench("fig2.py", tmp_path, "--tasks", "Hopper-v5", "--epochs", "2", "--steps-per-epoch", "100",
                        "--seeds", "3", "--task-seeds", "Hopper-v5=0", "--final-window", "2")
    finals, progress = printed["final_returns"]["Hopper-v5"], printed["progress_vs_best_model_based"]["Hopper-v5"]
    assert set(finals) == {"sac", "mbpo", "mopac", "mdemorl"} and csv_rows(tmp_path) == 4 * 2
    with open(tmp_path / "smoke.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["seed"] for row in rows} == {"0"}  # --task-seeds wins over --seeds
    sac = [float(row["eval_return"]) for row in rows if row["algo"] == "sac"]
    assert finals["sac"] == pytest.approx(sum(sac) / 2)  # the final return averages the window
    best = max(("mbpo", "mopac"), key=finals.get)
    assert progress["baseline"] == best and progress["target_return"] == pytest.approx(finals[best], abs=0.05)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["smoke_measured"]["progress_vs_best_model_based"]["Hopper-v5"] == progress
    bad = subprocess.run([sys.executable, str(HERE / "fig2.py"), "--final-window", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--final-window 0: must be at least 1" in bad.stderr
    for item, problem in (("Hopper-v5=a", "write TASK=S[,S...]"), ("Ant-v5=0", "'Ant-v5' is not among --tasks")):
        bad = subprocess.run([sys.executable, str(HERE / "fig2.py"), "--tasks", "Hopper-v5", "--task-seeds", item],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and problem in bad.stderr, bad.stderr


@pytest.mark.integration
def test_fig3_smoke(tmp_path):
    printed = run_bench("fig3.py", tmp_path, "--fractions", "0.1", "1.0", "--epochs", "2", "--steps-per-epoch",
                        "100", "--seeds", "0", "--target=-1e9")
    assert printed["elite_best_p"] in (0.1, 1.0) and printed["epochs_to_target"] == {"p=10%": 1.0, "p=100%": 1.0}
    assert csv_rows(tmp_path) == 2 * 2
    logs = sorted((tmp_path / "runs").glob("*/*/log.txt"))
    written = [log.stat().st_mtime_ns for log in logs]
    again = run_bench("fig3.py", tmp_path, "--fractions", "0.1", "1.0", "--epochs", "2", "--steps-per-epoch",
                      "100", "--seeds", "0", "--target=1e9", "--reuse")  # summarized again from the finished runs
    assert len(logs) == 2 and [log.stat().st_mtime_ns for log in logs] == written
    assert again["epochs_to_target"] == {"p=10%": None, "p=100%": None} and csv_rows(tmp_path) == 2 * 2
    earlier = tmp_path / "earlier.csv"
    earlier.write_text((tmp_path / "smoke.csv").read_text())
    shutil.rmtree(tmp_path / "runs")  # the run directories are gone: the curves come from the CSV
    from_csv = run_bench("fig3.py", tmp_path, "--fractions", "0.1", "1.0", "--epochs", "2", "--steps-per-epoch",
                         "100", "--seeds", "0", "--target=-1e9", "--reuse-csv", str(earlier))
    assert not list((tmp_path / "runs").glob("*/*/log.txt")) and from_csv == printed
    assert (tmp_path / "smoke.csv").read_text() == earlier.read_text()
    with open(earlier, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["flags"] for row in rows} == {f"--elite-fraction {p} " + " ".join(TINY) for p in ("0.1", "1.0")}
    before_flags = tmp_path / "before_flags.csv"  # as written before the flags column: matches any flags
    with open(before_flags, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "flags"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    run_bench("fig3.py", tmp_path, "--fractions", "0.1", "1.0", "--epochs", "2", "--steps-per-epoch", "100",
              "--seeds", "0", "--target=-1e9", "--reuse-csv", str(before_flags), flags=("--mirror-alpha", "1.0"))
    assert not list((tmp_path / "runs").glob("*/*/log.txt"))
    other = run_bench("fig3.py", tmp_path, "--fractions", "0.1", "1.0", "--epochs", "2", "--steps-per-epoch", "100",
                      "--seeds", "0", "--target=-1e9", "--reuse-csv", str(earlier), flags=("--mirror-alpha", "1.0"))
    assert len(list((tmp_path / "runs").glob("*/*/log.txt"))) == 2  # other trainer flags: trained, not read
    assert set(other["final_returns"]) == {"p=10%", "p=100%"}
    bad = subprocess.run([sys.executable, str(HERE / "fig3.py"), "--reuse-csv", str(tmp_path / "none.csv")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "none.csv: no such file" in bad.stderr, bad.stderr


def test_trailing_mean_averages_up_to_window_evaluations():
    sys.path.insert(0, str(HERE))
    import numpy as np
    from trainer_runs import final_return, trailing_mean
    returns = np.array([0.0, 10.0, 20.0, -30.0])
    assert trailing_mean(returns, 3).tolist() == [0.0, 5.0, 10.0, 0.0]
    assert trailing_mean(returns, 1).tolist() == returns.tolist()
    assert final_return(returns, 2) == -5.0


def test_fig2_progress_is_the_steps_to_the_best_baselines_final_return():
    sys.path.insert(0, str(HERE))
    import numpy as np
    from fig2 import progress_against_best_baseline
    from trainer_runs import Curve, Run

    steps = np.array([1000.0, 2000.0, 3000.0, 4000.0])
    returns = {"mbpo": [0, 10, 20, 30], "mopac": [0, 50, 80, 100], "mdemorl": [120, 0, 120, 150],
               "sac": [0, 0, 0, 500]}
    curves = {Run("T", algo, 0, algo): Curve(steps, np.array(r, dtype=float), steps, [])
              for algo, r in returns.items()}
    # sac is no model-based baseline; mdemorl's first evaluation above 100 does not count, as it dips after it
    assert progress_against_best_baseline(curves, "T", window=1) == {
        "baseline": "mopac", "target_return": 100.0, "baseline_steps": 4000.0, "mdemorl_steps": 3000.0,
        "steps_ratio": 0.75}
    # over a window of 2 the target is mopac's mean of 80 and 100; mdemorl's trailing mean stays above 90 from 4000
    assert progress_against_best_baseline(curves, "T", window=2)["mdemorl_steps"] == 4000.0
    curves[Run("T", "mdemorl", 0, "mdemorl")] = Curve(steps, np.array([200.0, 10, 20, 30]), steps, [])
    assert progress_against_best_baseline(curves, "T", window=1)["steps_ratio"] is None
    sac_only = {run: curve for run, curve in curves.items() if run.algo == "sac"}
    assert progress_against_best_baseline(sac_only, "T", window=1) is None


def test_fig3_rejects_an_empty_smoothing_window():
    bad = subprocess.run([sys.executable, str(HERE / "fig3.py"), "--smooth", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--smooth 0: must be at least 1" in bad.stderr


@pytest.mark.integration
def test_speed_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "speed.py"), "--threads", "1", "--repeats", "1", "--batch", "2",
                           "--horizon", "2", "--samples", "4", "--sac-updates", "3", "--fit-rows", "300", "--fit-epochs", "1",
                           "--name", "smoke",
                           "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["planner_peak_fraction"] > 0 and printed["sac_update_speedup"] > 0
    assert printed["sac_dtype"] in ("float32", "bfloat16") and printed["auto_dtype"] in ("float32", "bfloat16")
    assert printed["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert all(printed[f"auto_vs_best_{part}"] > 0 for part in ("planner", "sac", "fit"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["smoke_1_threads"]["measured"]["threads"] == 1
    assert {k: v for k, v in summary["smoke_1_threads"].items() if k != "measured"} == printed
    assert printed["model_fit_bf16_speedup"] > 0
    assert 0 < printed["model_layer_peak_fraction"] and 0 < printed["model_step_peak_fraction"]
    # per dtype: peak, GFLOP/s, planner, layer and model-step fractions; per dtype and auto: planner rows/s and
    # fit rows/s; 4 SAC variants; the headline keys but planner_peak_fraction_float32, a per-dtype row
    with open(tmp_path / "smoke.csv", newline="") as f:
        measures = [row["measure"] for row in csv.DictReader(f)]
    assert len(measures) == len(printed) - 1 + 2 * 5 + 3 * 2 + 4
    assert len(set(measures)) == len(measures)  # each measure once


def test_sustained_walking_needs_a_window_of_walking_evaluations():
    sys.path.insert(0, str(HERE))
    import numpy as np
    from stochlite_walking import episodes_until_sustained_walking, episodes_until_walking

    speeds = np.array([0.0, 0.3, 0.0, 0.2, 0.25, 0.2, 0.2, 0.2])  # one lucky evaluation, then steady walking
    steps = np.arange(1, 9) * 1000
    assert episodes_until_walking(steps, speeds, 0.2, 1000) == 2.0
    assert episodes_until_sustained_walking(steps, speeds, 0.2, 1000, window=5) == 8.0  # evaluations 4..8
    assert episodes_until_sustained_walking(steps, speeds, 0.2, 1000, window=1) == 2.0
    assert episodes_until_sustained_walking(steps[:3], speeds[:3], 0.2, 1000, window=5) is None


@pytest.mark.integration
def test_stochlite_walking_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "stochlite_walking.py"), "--epochs", "1", "--steps-per-epoch", "100",
         "--seeds", "0", "--jobs", "2", "--gif-steps", "20", "--final-episodes", "2", "--name", "smoke",
         "--results-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--", *TINY],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert all(len(summary["final_policy_speeds"][algo]["0"]) == 2 for algo in ("sac", "mdemorl"))
    assert 0.0 <= summary["final_policy_walking_fraction"]["sac"] <= 1.0
    assert set(summary["episodes_until_walking"]) == {"sac", "mdemorl"}
    assert summary["episodes_until_sustained_walking"]["sac"] == {"0": None}  # 1 evaluation < window of 5
    assert set(summary["last_window_speed_mean"]["mdemorl"]) == {"0"}
    assert summary["walk_speed_m_per_s"] == 0.2 and summary["episode_steps"] == 50
    assert summary["gif"]["frames"] == 4  # 20 steps, every 5th (unless the robot fell first)
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + 2 algos x 1 epoch
    assert all(row.split(",")[-1] not in ("", "nan") for row in rows[1:])  # eval_forward_speed logged
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "smoke_gait.gif").read_bytes()[:6] == b"GIF89a"
    (tmp_path / "smoke_summary.json").unlink()
    again = subprocess.run(  # --summarize-only: the same runs summarised again, nothing trained
        [sys.executable, str(HERE / "stochlite_walking.py"), "--summarize-only", "--epochs", "1", "--seeds", "0",
         "--gif-steps", "20", "--final-episodes", "2", "--name", "smoke", "--results-dir", str(tmp_path),
         "--runs-dir", str(tmp_path / "runs"), "--", *TINY], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert json.loads((tmp_path / "smoke_summary.json").read_text())["final_policy_speeds"] == \
        summary["final_policy_speeds"]  # deterministic policies, seeded episodes
    assert "runs of" not in again.stdout


@pytest.mark.integration
def test_leg_model_error_smoke(tmp_path):
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "mdemorl_learner.train", "--task", "leg", "--algo", "mdemorl",
                              "--epochs", "1", "--steps-per-epoch", "100", "--out", str(run), *TINY],
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(HERE / "leg_model_error.py"), str(run), "--starts", "6", "--horizon",
                           "2", "--name", "smoke", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(tmp_path / "smoke.csv", newline="") as f:
        rows = {r["kind"].split(",")[0]: r for r in csv.DictReader(f)}
    assert set(rows) == {"real (replay check)", "policy rollout", "DMD-MPC"}
    replayed = rows["real (replay check)"]  # D_ENV's own transitions, replayed in PyBullet: exact
    assert int(replayed["transitions"]) == 6 and float(replayed["head_rms"]) < 1e-5
    assert float(replayed["qdot_abs_err_rad_s"]) < 1e-4
    assert int(rows["DMD-MPC"]["transitions"]) == 6 * 2 and float(rows["DMD-MPC"]["task_rms"]) >= 0.0
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_graph_latency_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "graph_latency.py"), "--seconds", "2", "--name", "smoke",
                           "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["commands"] > 0 and 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_graph_vs_single_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "graph_vs_single.py"), "--epochs", "1", "--steps-per-epoch", "200",
         "--seeds", "0", "--name", "smoke", "--results-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
         "--domain-id", str(100 + os.getpid() % 50)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert set(summary["final_eval_return"]) == {"graph", "single"}
    assert all(w > 0 for w in summary["wall_s_per_epoch"].values())
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + 2 modes x 1 epoch
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_hil_vs_sim_smoke(tmp_path):
    common = ["--epochs", "1", "--steps-per-epoch", "200", "--seeds", "0", "--name", "smoke", "--results-dir",
              str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--domain-id", str(100 + os.getpid() % 50)]
    proc = subprocess.run([sys.executable, str(HERE / "hil_vs_sim.py"), *common], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert set(summary["targets"]) == set(summary["met"]) and summary["manifest"]["epochs"] == 1
    assert summary["updates_per_step_hil"] is None  # 200 steps < start_steps: no SAC update yet
    assert summary["control_rate_hz_p1"] > 0 and summary["watchdog_trips_in_episodes"] is not None
    assert set(summary["per_seed"][0]["final_eval_return"]) == {"sim", "hil"}
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert rows[0] == "path,seed,epoch,env_steps,eval_return,sac_updates,updates_per_step"
    assert len(rows) == 1 + 2  # header + 2 paths x 1 epoch
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "smoke_summary.json").unlink()
    again = subprocess.run([sys.executable, str(HERE / "hil_vs_sim.py"), *common, "--summarize-only"],
                           capture_output=True, text=True, timeout=300)  # nothing trained: the same figures
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    rebuilt = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert {k: v for k, v in rebuilt.items() if k != "manifest"} == {k: v for k, v in summary.items()
                                                                     if k != "manifest"}
    assert "runs of" not in again.stdout


@pytest.mark.parametrize("design", [[], ["--in-process"]], ids=["graph", "in_process"])
@pytest.mark.integration
def test_driver_loop_smoke(tmp_path, design):
    proc = subprocess.run([sys.executable, str(HERE / "driver_loop.py"), "--seconds", "2", "--name", "smoke",
                           "--results-dir", str(tmp_path), *design], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["cycles"] > 500 and 0 < summary["rate_hz"] <= 501
    assert 0 <= summary["period_p50_ms"] <= summary["period_p99_ms"] <= summary["period_max_ms"]
    assert summary["commands"] > 0 and 0 < summary["cmd_latency_p99_ms"] and 0 <= summary["missed_pct"] <= 100
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert rows[0] == "cycle,period_error_ms" and len(rows) == 1 + summary["cycles"]
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
