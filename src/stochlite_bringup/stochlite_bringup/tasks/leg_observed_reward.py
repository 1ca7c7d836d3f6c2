"""The leg's reward (eq. 15) computed from an observation, in torch, for imagined transitions.

Every quantity eq. 15 needs is in :class:`LegTask`'s observation of the state a transition ends
in: the joint angles and rates give the foot's position and velocity (forward kinematics and its
Jacobian), and the observation carries the desired position and velocity at that time. So a
model's predicted next state determines the reward exactly, without a learned reward head.
"""

import torch

from .foot_path import CENTRE_X_M, CENTRE_Z_M
from .leg_kinematics import SHANK_LENGTH_M, THIGH_LENGTH_M
from .leg_reward import POSITION_UNIT_M, VELOCITY_UNIT_M_PER_S
from .leg_task import DESIRED_POSITION_SCALE_M, JOINT_VELOCITY_SCALE_RAD_PER_S


def leg_reward_from_observation(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Eq. 15 on ``next_obs [..., 10]`` (the layout of :class:`LegTask`) -> reward ``[...]``."""
    q1, q2 = next_obs[..., 0], next_obs[..., 1]
    qdot1, qdot2 = (next_obs[..., 2:4] * JOINT_VELOCITY_SCALE_RAD_PER_S).unbind(-1)
    q12 = q1 + q2
    x = THIGH_LENGTH_M * torch.sin(q1) + SHANK_LENGTH_M * torch.sin(q12)
    z = -THIGH_LENGTH_M * torch.cos(q1) - SHANK_LENGTH_M * torch.cos(q12)
    xdot = THIGH_LENGTH_M * torch.cos(q1) * qdot1 + SHANK_LENGTH_M * torch.cos(q12) * (qdot1 + qdot2)
    zdot = THIGH_LENGTH_M * torch.sin(q1) * qdot1 + SHANK_LENGTH_M * torch.sin(q12) * (qdot1 + qdot2)
    desired = next_obs[..., 4:6] * DESIRED_POSITION_SCALE_M
    position_error = torch.stack((x - CENTRE_X_M - desired[..., 0], z - CENTRE_Z_M - desired[..., 1]), -1)
    velocity_error = torch.stack((xdot, zdot), -1) - next_obs[..., 6:8]
    return (0.8 * torch.exp(-(position_error / POSITION_UNIT_M).square().sum(-1))
            + 0.2 * torch.exp(-(velocity_error / VELOCITY_UNIT_M_PER_S).square().sum(-1)))  # eq. 15
