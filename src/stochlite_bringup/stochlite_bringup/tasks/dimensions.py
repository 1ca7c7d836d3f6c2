"""``task_dimensions``: a task's observation and action sizes and its action box, without running it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import gymnasium
import numpy as np
from numpy.typing import NDArray

from ..task_names import GYM_TASK_NAMES, LEG_TASK_NAME, STOCHLITE_TASK_NAME, TASK_NAMES
from .leg_task import ACT_DIM, OBS_DIM
from .stochlite_env import OBS_DIM as STOCHLITE_OBS_DIM
from .stochlite_gait import ACTION_DIM as STOCHLITE_ACT_DIM


@dataclass(frozen=True)
class TaskDimensions:
    """Sizes of a task's observation and action; the policy's action in [-1, 1] maps onto [low, high]."""

    obs_dim: int
    act_dim: int
    action_low: NDArray[np.float64]
    action_high: NDArray[np.float64]

    def command(self, action: NDArray) -> NDArray[np.float64]:
        """A policy action in [-1, 1] as the task's action: ``low + (a + 1) / 2 * (high - low)``."""
        return self.action_low + (np.asarray(action, np.float64) + 1.0) * 0.5 * (self.action_high - self.action_low)


@lru_cache(maxsize=None)
def task_dimensions(name: str) -> TaskDimensions:
    """Dimensions of task ``name``; the leg's and StochLite's action boxes are [-1, 1] (the agent scales it by its max_torque)."""
    if name == LEG_TASK_NAME:
        return TaskDimensions(OBS_DIM, ACT_DIM, -np.ones(ACT_DIM), np.ones(ACT_DIM))
    if name == STOCHLITE_TASK_NAME:  # the gait generator maps [-1, 1] itself (stochlite_gait.gait_command)
        return TaskDimensions(STOCHLITE_OBS_DIM, STOCHLITE_ACT_DIM, -np.ones(STOCHLITE_ACT_DIM),
                              np.ones(STOCHLITE_ACT_DIM))
    if name not in GYM_TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(TASK_NAMES)}")
    env = gymnasium.make(name, disable_env_checker=True)
    try:
        space = env.action_space
        return TaskDimensions(env.observation_space.shape[0], space.shape[0], space.low.astype(np.float64),
                              space.high.astype(np.float64))
    finally:
        env.close()
