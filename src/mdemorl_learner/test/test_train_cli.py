"""The trainer CLI as a user runs it: real processes, real PyBullet and MuJoCo, files on disk."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mdemorl_learner.config import TrainConfig
from mdemorl_planner.compute import BF16_MIN_SPEEDUP
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REQUIRED_COLUMNS = {"epoch", "env_steps", "eval_return", "train_return", "model_val_loss", "mpc_transitions",
                    "sac_updates", "wall_s"}
TINY = ["--start-steps", "100", "--batch-size", "32", "--hidden-size", "32", "--model-hidden", "32",
        "--ensemble-size", "3", "--num-elites", "2", "--model-max-epochs", "3", "--rollout-batch-start", "8",
        "--rollout-batch-max", "8", "--num-samples", "10", "--horizon-start", "2", "--horizon-end", "3",
        "--schedule-end-epoch", "2", "--model-train-freq", "100", "--torch-threads", "1"]


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mdemorl_learner.train", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["sac", "mbpo", "mopac", "mdemorl"])
@pytest.mark.integration
def test_each_algorithm_writes_progress_config_checkpoint_and_plots(tmp_path, algo):
    out = tmp_path / "run"
    proc = train(tmp_path, "--task", "leg", "--algo", algo, "--epochs", "2", "--steps-per-epoch", "200",
                 "--episode-steps", "100", "--seed", "3", "--init-alpha", "0.2", "--model-dtype", "float32",
                 "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(out / "progress.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert REQUIRED_COLUMNS <= set(rows[0])
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert int(rows[-1]["sac_updates"]) == 400 - 100 + 1  # one update per step from start_steps on
    if algo == "sac":
        assert int(rows[-1]["mpc_transitions"]) == 0
    else:
        assert int(rows[-1]["mpc_transitions"]) > 0
        assert float(rows[-1]["model_val_loss"]) > 0.0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["algo"] == algo and config["seed"] == 3 and config["steps_per_epoch"] == 200
    assert config["init_alpha"] == 0.2
    assert config["real_ratio"] == 0.9  # --real-ratio -1: the leg's
    assert "elite_fraction" in config and "horizon_end" in config
    assert config["sac_dtype"] == config["planner_dtype"] == config["device"] == "auto"  # as asked ...
    assert config["model_dtype"] == "float32"  # ... or as given
    resolved = config["resolved"]  # ... and what this host resolved them to
    assert set(resolved) == {"device", "sac_dtype", "model_dtype", "planner_dtype", "cpu_capability",
                             "float32_gflops", "bfloat16_gflops"}
    assert resolved["device"] in ("cpu", "cuda") and resolved["model_dtype"] == "float32"
    assert resolved["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    faster = "bfloat16" if resolved["bfloat16_gflops"] >= BF16_MIN_SPEEDUP * resolved["float32_gflops"] else "float32"
    assert resolved["sac_dtype"] == resolved["planner_dtype"] == faster
    assert TrainConfig.from_yaml(out / "config.yaml").sac_dtype == "auto"  # a run's config.yaml reads back
    assert "compute: " in proc.stderr and f"SAC {faster}" in proc.stderr
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=False)
    assert state["epoch"] == 2 and state["env_steps"] == 400
    assert state["sac"]["config"]["init_alpha"] == 0.2 and 0.0 < float(rows[-1]["alpha"]) < 0.2  # tuned down from 0.2
    assert (state["model"] is None) == (algo == "sac")
    for png in ("learning_curve.png", "foot_path.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "done: 2 epochs" in proc.stdout
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    evals = events.Scalars("progress/eval_return")
    assert [e.step for e in evals] == [200, 400]
    assert [round(e.value, 3) for e in evals] == [round(float(r["eval_return"]), 3) for r in rows]


@pytest.mark.parametrize("task, plot", [("Hopper-v5", None), ("stochlite", "forward_speed.png")])
@pytest.mark.integration
def test_task_with_termination_runs(tmp_path, task, plot):
    out = tmp_path / "run"
    proc = train(tmp_path, "--task", task, "--algo", "mdemorl", "--epochs", "1", "--steps-per-epoch", "200",
                 "--episode-steps", "100", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(out / "progress.csv")
    assert int(rows[0]["env_steps"]) == 200 and int(rows[0]["mpc_transitions"]) > 0
    assert not (out / "foot_path.png").exists()
    if plot is not None:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert float(rows[0]["eval_forward_speed"]) > -1.0  # logged: a speed in m/s, not nan
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=False)
    assert state["sac"]["config"]["init_alpha"] == {"Hopper-v5": 1.0, "stochlite": 0.05}[task]  # --init-alpha 0: the task's
    assert yaml.safe_load((out / "config.yaml").read_text())["real_ratio"] == 0.5  # --real-ratio -1: the task's


@pytest.mark.parametrize("args, names", [
    (["--algo", "ppo"], "--algo 'ppo'"),
    (["--task", "Humanoid-v9"], "--task 'Humanoid-v9'"),
    (["--epochs", "0"], "--epochs"),
    (["--elite-fraction", "1.5"], "--elite-fraction"),
    (["--epochs", "many"], "--epochs"),
    (["--num-elites", "9"], "--num-elites 9"),
    (["--init-alpha", "-1"], "--init-alpha"),
    (["--real-ratio", "-0.5"], "--real-ratio must lie in [0, 1], or be -1 for the task's, got -0.5"),
    (["--imagined-reward", "oracle"], "--imagined-reward is 'oracle', not one of auto, model, task"),
    (["--model-dtype", "float16"], "--model-dtype 'float16' is not one of auto, float32, bfloat16"),
    (["--device", "tpu"], "--device 'tpu' is not one of auto, cpu, cuda"),
    (["--task", "Hopper-v5", "--imagined-reward", "task"], "reward of Hopper-v5 cannot be computed from its observation; use 'model'"),
])
def test_bad_value_is_one_clear_line_and_nonzero_exit(tmp_path, args, names):
    proc = train(tmp_path, "--out", str(tmp_path / "never"), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "error" in lines[0] and names in lines[0]
    assert not (tmp_path / "never").exists()
