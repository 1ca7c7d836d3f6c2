"""Smoke runs of the benchmark scripts, so that they do not rot. Tiny budgets: no figure here means anything."""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = ["--start-steps", "50", "--batch-size", "16", "--hidden-size", "16", "--model-hidden", "16",
        "--ensemble-size", "2", "--num-elites", "1", "--model-max-epochs", "2", "--rollout-batch-start", "4",
        "--rollout-batch-max", "4", "--num-samples", "6", "--horizon-start", "2", "--horizon-end", "2",
        "--model-train-freq", "100", "--episode-steps", "50"]


def test_leg_sample_efficiency_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "leg_sample_efficiency.py"), "--epochs", "2", "--steps-per-epoch", "100",
         "--seeds", "0", "--jobs", "2", "--name", "smoke", "--results-dir", str(tmp_path),
         "--runs-dir", str(tmp_path / "runs"), "--", *TINY],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert set(summary["final_eval_return_mean"]) == {"sac", "mdemorl"}
    assert summary["target"] == "sac final mean eval return"
    assert all(w > 0 for w in summary["wall_s_per_epoch"].values())
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + 2 algos x 2 epochs
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


def test_stochlite_walking_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "stochlite_walking.py"), "--epochs", "1", "--steps-per-epoch", "100",
         "--seeds", "0", "--jobs", "2", "--gif-steps", "20", "--name", "smoke", "--results-dir", str(tmp_path),
         "--runs-dir", str(tmp_path / "runs"), "--", *TINY],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert set(summary["episodes_until_walking"]) == {"sac", "mdemorl"}
    assert summary["walk_speed_m_per_s"] == 0.2 and summary["episode_steps"] == 50
    assert summary["gif"]["frames"] == 4  # 20 steps, every 5th (unless the robot fell first)
    rows = (tmp_path / "smoke.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + 2 algos x 1 epoch
    assert all(row.split(",")[-1] not in ("", "nan") for row in rows[1:])  # eval_forward_speed logged
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "smoke_gait.gif").read_bytes()[:6] == b"GIF89a"


def test_graph_latency_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "graph_latency.py"), "--seconds", "2", "--name", "smoke",
                           "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["commands"] > 0 and 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


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
