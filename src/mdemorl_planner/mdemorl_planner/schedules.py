"""Epoch schedules for the DMD-MPC inner loop (Algorithm 1 line 9, sec. IV.B).

The paper grows the horizon from 5 to 15, keeps M = 100 rollouts and grows the number of start
states per epoch up to 10,000, without giving the epochs; the defaults below pick them.
"""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """Value linearly interpolated from start_value (at start_epoch) to end_value (at end_epoch), clamped.

    Returns an int (rounded down) when both end values are ints, a float otherwise.
    """

    start_epoch: int
    end_epoch: int
    start_value: int | float
    end_value: int | float

    def __post_init__(self) -> None:
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch {self.end_epoch} precedes start_epoch {self.start_epoch}")

    def __call__(self, epoch: int) -> int | float:
        span = self.end_epoch - self.start_epoch
        if span == 0:
            progress = 1.0 if epoch >= self.end_epoch else 0.0
        else:
            progress = min(max((epoch - self.start_epoch) / span, 0.0), 1.0)
        value = self.start_value + progress * (self.end_value - self.start_value)
        if isinstance(self.start_value, int) and isinstance(self.end_value, int):
            return math.floor(value + 1e-9)  # tolerance against 9.999... from float interpolation
        return value


def horizon_schedule(start_epoch: int = 20, end_epoch: int = 100, start: int = 5, end: int = 15) -> LinearSchedule:
    """Planning horizon H: 5 -> 15 (paper); reaches 15 at epoch 100 by default."""
    return LinearSchedule(start_epoch, end_epoch, start, end)


def num_samples_schedule(value: int = 100) -> LinearSchedule:
    """Sampled control sequences M per start state: constant 100 (paper)."""
    return LinearSchedule(0, 0, value, value)


def mpc_batch_schedule(start_epoch: int = 0, end_epoch: int = 50, start: int = 1_000,
                       end: int = 10_000) -> LinearSchedule:
    """Start states per epoch (DMD-MPC iterations): grows to the paper's maximum of 10,000 by epoch 50."""
    return LinearSchedule(start_epoch, end_epoch, start, end)
