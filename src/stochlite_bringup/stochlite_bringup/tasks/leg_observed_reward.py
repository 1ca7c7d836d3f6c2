"""The leg's reward (eq. 15) computed from an observation, in torch, for imagined transitions.

Every quantity eq. 15 needs is in :class:`LegTask`'s observation of the state a transition ends
in: the joint angles and rates give the foot's position and velocity (forward kinematics and its
Jacobian), and the observation carries the desired position and velocity at that time. So a
model's predicted next state determines the reward exactly, without a learned reward head.
"""

import torch

from ..task_names import LEG_TASK_NAME
from .foot_path import CENTRE_X_M, CENTRE_Z_M
from .leg_kinematics import foot_velocity, forward_kinematics
from .leg_reward import leg_tracking_reward
from .leg_task import DESIRED_POSITION_SCALE_M, JOINT_VELOCITY_SCALE_RAD_PER_S


def leg_reward_from_observation(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Eq. 15 on ``next_obs [..., 10]`` (the layout of :class:`LegTask`) -> reward ``[...]``."""
    q, qdot = next_obs[..., 0:2], next_obs[..., 2:4] * JOINT_VELOCITY_SCALE_RAD_PER_S
    desired = next_obs[..., 4:6] * DESIRED_POSITION_SCALE_M + next_obs.new_tensor((CENTRE_X_M, CENTRE_Z_M))
    return leg_tracking_reward(forward_kinematics(q), desired, foot_velocity(q, qdot), next_obs[..., 6:8])


def observed_reward_fn(task: str):
    """The reward of a transition from its observations for ``task`` (one of task_names.OBSERVED_REWARD_TASKS),
    or None for a task whose observation does not determine it."""
    return {LEG_TASK_NAME: leg_reward_from_observation}.get(task)
