"""What the learning benchmarks share: the machine they ran on, and a plot of returns over seeds."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def plot_seed_curves(path: Path, steps: np.ndarray, curves: dict[str, list[np.ndarray]], title: str,
                     target: tuple[float, str] | None = None, ylabel: str = "evaluation return") -> None:
    """Mean evaluation return per label over its seeds, shaded from the worst to the best seed; PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, runs in curves.items():
        runs = np.array(runs)
        ax.plot(steps, runs.mean(0), "o-", label=f"{label} (mean of {len(runs)} seeds)" if len(runs) > 1 else f"{label} (1 seed)")
        ax.fill_between(steps, runs.min(0), runs.max(0), alpha=0.2)
    if target is not None:
        ax.axhline(target[0], color="grey", ls=":", label=target[1])
    ax.set(xlabel="real environment steps", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
