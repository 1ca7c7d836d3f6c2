"""How wrong are imagined leg transitions? The model against PyBullet, transition by transition.

    scripts/run.sh python bench/leg_model_error.py RUN_DIR [RUN_DIR ...] [--starts 200] [--horizon 10]

For each finished leg run (its checkpoints/latest.pt and d_env.npz), start states are drawn from D_ENV
and three kinds of transitions are made from them: real ones replayed from D_ENV (a check of the replay
itself: its error must be 0), MBPO-style rollouts of the stochastic policy through the model, and the
DMD-MPC rollouts that fill D_MPC. Each transition (x, u) is then replayed in the simulator from x (its
joint angles, rates and phase) to give the true x' and r. Reported per kind: the imagined reward's bias
and RMS error with the learned reward head and with the task's reward of the predicted state
(``--imagined-reward task``), and the mean absolute error of the predicted joint angles and rates.
Writes bench/results/<name>.csv and .png. Not a test.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from mdemorl_learner.config import TrainConfig
from mdemorl_learner.imagination import Imagination, policy_rollout
from mdemorl_learner.sac import SAC, SACConfig
from mdemorl_planner.compute import resolve_compute
from mdemorl_planner.replay_buffer import ReplayBuffer
from seed_curves import machine
from stochlite_bringup.tasks.leg_env import DEFAULT_MAX_TORQUE_NM  # the trainer's leg (no torque setting)
from stochlite_bringup.tasks.leg_observed_reward import leg_reward_from_observation
from stochlite_bringup.tasks.leg_simulation import LegSimulation
from stochlite_bringup.tasks.leg_task import JOINT_VELOCITY_SCALE_RAD_PER_S, LegTask

HERE = Path(__file__).resolve().parent
COLUMNS = ("run", "kind", "transitions", "reward_mean_true", "head_bias", "head_rms", "task_bias", "task_rms",
           "q_abs_err_rad", "qdot_abs_err_rad_s")


def replay(sim: LegSimulation, task: LegTask, obs: np.ndarray, act: np.ndarray, max_torque: float) -> tuple:
    """True (x', r) of (x, u): the simulator put in x's joint state and phase, then stepped with u."""
    rate = obs[2:4].astype(np.float64) * JOINT_VELOCITY_SCALE_RAD_PER_S
    sim.set_state(obs[0:2], rate)
    sim.step(max_torque * np.clip(act, -1.0, 1.0))
    task.reset(float(np.arctan2(obs[8], obs[9]) / (2.0 * np.pi)) % 1.0)
    sample = task.sample(*sim.joint_state(), sim.timestep_s)
    return sample.obs, sample.reward


def errors(run: str, kind: str, data: dict, sim: LegSimulation, task: LegTask, max_torque: float) -> dict:
    true = [replay(sim, task, o, a, max_torque) for o, a in zip(data["obs"], data["act"])]
    true_obs, true_reward = np.array([t[0] for t in true]), np.array([t[1] for t in true])
    task_reward = leg_reward_from_observation(None, None, torch.as_tensor(data["next_obs"])).numpy()
    head, observed = data["reward"] - true_reward, task_reward - true_reward
    state = np.abs(data["next_obs"][:, :4] - true_obs[:, :4])
    return {"run": run, "kind": kind, "transitions": len(true_reward), "reward_mean_true": true_reward.mean(),
            "head_bias": head.mean(), "head_rms": np.sqrt(np.mean(head**2)), "task_bias": observed.mean(),
            "task_rms": np.sqrt(np.mean(observed**2)), "q_abs_err_rad": state[:, :2].mean(),
            "qdot_abs_err_rad_s": state[:, 2:].mean() * JOINT_VELOCITY_SCALE_RAD_PER_S}


def measure(run_dir: Path, starts: int, horizon: int, seed: int) -> list[dict]:
    cfg = TrainConfig.from_yaml(run_dir / "config.yaml")
    cfg = cfg.resolved(resolve_compute(cfg.device, cfg.sac_dtype, cfg.model_dtype, cfg.planner_dtype))  # this host's
    if cfg.task != "leg" or cfg.algo == "sac":
        raise SystemExit(f"{run_dir}: a leg run of a model-based algorithm is needed, this is {cfg.algo} on {cfg.task}")
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    d_env = ReplayBuffer.load(run_dir / "checkpoints" / "d_env.npz").all()
    agent = SAC(d_env["obs"].shape[1], d_env["act"].shape[1], SACConfig(hidden_size=cfg.hidden_size,
                                                                      num_layers=cfg.num_layers, device=cfg.device))
    agent.load_state_dict(state["sac"])
    cfg.imagined_reward, cfg.horizon_start, cfg.horizon_end = "model", horizon, horizon  # the head's rewards
    imagination = Imagination(cfg, d_env["obs"].shape[1], d_env["act"].shape[1], agent, None)
    imagination.model.load_state_dict(state["model"])
    rows = np.random.default_rng(seed).choice(len(d_env["obs"]), min(starts, len(d_env["obs"])), replace=False)
    x0 = d_env["obs"][rows]
    torch.manual_seed(seed)
    kinds = {"real (replay check)": {k: d_env[k][rows] for k in ("obs", "act", "reward", "next_obs")},
             f"policy rollout, {horizon} steps": policy_rollout(imagination.model, agent, x0, horizon, None),
             f"DMD-MPC, H={horizon}": imagination.planner(cfg.epochs).imagine(x0)}
    sim, task = LegSimulation(), LegTask()
    try:
        return [errors(run_dir.name, kind, data, sim, task, DEFAULT_MAX_TORQUE_NM) for kind, data in kinds.items()]
    finally:
        sim.close()


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['run']}\n{r['kind']}" for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.5))
    ax.barh(y + 0.2, [r["head_rms"] for r in rows], 0.4, label="learned reward head")
    ax.barh(y - 0.2, [r["task_rms"] for r in rows], 0.4, label="task reward of the predicted state")
    ax.plot([r["reward_mean_true"] for r in rows], y, "k|", markersize=14, label="mean true reward")
    ax.set(yticks=y, yticklabels=labels, xlabel="RMS error of the imagined reward per transition",
           title=f"leg: imagined rewards against PyBullet ({machine()})")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished leg runs (mbpo, mopac or mdemorl)")
    parser.add_argument("--starts", type=int, default=200, help="start states drawn from each run's D_ENV")
    parser.add_argument("--horizon", type=int, default=10, help="steps of the policy and DMD-MPC rollouts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="leg_model_error")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    args = parser.parse_args()
    rows = [row for run in args.runs for row in measure(run, args.starts, args.horizon, args.seed)]
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    with open(results / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    plot(results / f"{args.name}.png", rows)
    for r in rows:
        print(f"{r['run']:>24} {r['kind']:>26}: true r {r['reward_mean_true']:.3f}; head bias {r['head_bias']:+.4f} "
              f"rms {r['head_rms']:.4f}; task bias {r['task_bias']:+.4f} rms {r['task_rms']:.4f}; "
              f"|q err| {r['q_abs_err_rad']:.4f} rad, |qdot err| {r['qdot_abs_err_rad_s']:.3f} rad/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
