"""TensorBoard scalars of a run: every number of progress.csv, one event per epoch, under RUN_DIR/tensorboard."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

TENSORBOARD_DIR = "tensorboard"


class EpochScalars:
    """Writes an epoch's statistics (``EpochStats``) as scalars ``progress/<field>`` at step = env steps."""

    def __init__(self, run_dir: Path) -> None:
        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def write(self, stats) -> None:
        values = dataclasses.asdict(stats)
        step = int(values.pop("env_steps"))
        for name, value in values.items():
            self._writer.add_scalar(f"progress/{name}", float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
