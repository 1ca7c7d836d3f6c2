"""PNG plots of a run: the learning curve; the foot path against the desired one (leg); forward speed (StochLite)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_progress(path: Path) -> dict[str, np.ndarray]:
    """progress.csv as columns of floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def plot_learning_curve(progress_csv: Path, out_png: Path, title: str) -> None:
    """Evaluation and training return against real env steps, with the ensemble's validation loss."""
    plot_learning_columns(read_progress(progress_csv), out_png, title)


def plot_learning_columns(cols: dict[str, np.ndarray], out_png: Path, title: str) -> None:
    """:func:`plot_learning_curve` from columns ``env_steps``, ``eval_return``, ``train_return``, ``model_val_loss``."""
    if not cols or not len(cols["env_steps"]):
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(cols["env_steps"], cols["eval_return"], "o-", label="eval (deterministic)")
    ax[0].plot(cols["env_steps"], cols["train_return"], "s--", alpha=0.7, label="train episodes")
    ax[0].set(xlabel="real environment steps", ylabel="episode return", title=title)
    ax[0].grid(alpha=0.3)
    ax[0].legend()
    loss = cols["model_val_loss"]
    if np.isfinite(loss).any():
        ax[1].semilogy(cols["env_steps"], loss, "o-", color="tab:red")
        ax[1].set(xlabel="real environment steps", ylabel="validation MSE", title="ensemble elites")
    else:
        ax[1].text(0.5, 0.5, "model-free run: no dynamics model", ha="center", va="center")
        ax[1].set_axis_off()
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def plot_foot_path(foot: Sequence[np.ndarray], desired: Sequence[np.ndarray], dt: float, out_png: Path,
                   title: str) -> None:
    """The foot's path in the leg's plane (x forward, z up, metres) against the desired half-ellipse."""
    if len(foot) == 0:  # a list of points or a [T, 2] array (foot_path.npz)
        return
    p, pd = np.asarray(foot), np.asarray(desired)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    ax[0].plot(pd[:, 0], pd[:, 1], "k--", lw=2, label="desired")
    ax[0].plot(p[:, 0], p[:, 1], color="tab:blue", lw=1.2, label="actual")
    ax[0].set(xlabel="x [m]", ylabel="z [m]", title=title, aspect="equal")
    ax[0].grid(alpha=0.3)
    ax[0].legend()
    t = np.arange(len(p)) * dt
    err = np.linalg.norm(p - pd, axis=1) * 100.0
    ax[1].plot(t, err)
    ax[1].set(xlabel="time [s]", ylabel="tracking error [cm]", title=f"mean error {err.mean():.2f} cm")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def plot_forward_speed(speed: Sequence[float], dt: float, out_png: Path, title: str) -> None:
    """Forward speed [m/s] of an evaluation episode against time, with its mean."""
    if len(speed) == 0:
        return
    v = np.asarray(speed)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(len(v)) * dt, v, lw=1.0)
    ax.axhline(v.mean(), color="k", ls="--", label=f"mean {v.mean():.3f} m/s")
    ax.set(xlabel="time [s]", ylabel="forward speed [m/s]", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
