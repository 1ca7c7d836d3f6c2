"""A dynamics model whose imagined rewards come from the task instead of the ensemble's reward head."""
from __future__ import annotations

from typing import Callable

import torch

from .dmd_mpc import DynamicsModel

IMAGINED_REWARDS = ("auto", "model", "task")  # where imagined rewards come from: see TrainConfig.imagined_reward
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, u, x') -> r [...]


def uses_task_reward(setting: str, task_has_reward: bool, task: str) -> bool:
    """Whether imagined transitions take the task's reward instead of the ensemble's reward head, for
    ``setting`` (one of IMAGINED_REWARDS): "model" no, "task" yes, "auto" where the task has one.

    Raises ValueError for an unknown setting, and for "task" on a task without a reward of the observation.
    """
    if setting not in IMAGINED_REWARDS:
        raise ValueError(f"is {setting!r}, not one of {', '.join(IMAGINED_REWARDS)}")
    if setting == "task" and not task_has_reward:
        raise ValueError(f"is 'task' but the reward of {task} cannot be computed from its observation; "
                         "use 'model' (the ensemble's reward head) or 'auto'")
    return setting != "model" and task_has_reward


class TaskRewardModel:
    """The model's next states, with the task's reward of each transition in place of the reward head.

    For tasks whose observation determines the reward (``TaskSpec.reward_fn``): the imagined reward is
    then exact for the predicted state, where a learned head adds its own error (on the leg, its RMS
    error was as large as the mean reward itself).
    """

    def __init__(self, model: DynamicsModel, reward_fn: RewardFn) -> None:
        self.model, self.reward_fn = model, reward_fn

    def step(self, obs: torch.Tensor, act: torch.Tensor, deterministic: bool = False,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        next_obs, _ = self.model.step(obs, act, deterministic=deterministic, generator=generator)
        return next_obs, self.reward_fn(obs, act, next_obs).to(next_obs.dtype)
