"""The yardstick for ``sac_update_speedup``: SAC written the plain way, one PyTorch module per network.

Separate actor, Q1, Q2 and target networks (``nn.Sequential`` of ``nn.Linear``), one default Adam per
network and for the temperature, two critic losses, and a Python loop over parameters for the Polyak
update: the way most SAC code is written. Same sizes and maths as ``mdemorl_learner.sac.SAC``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


def _mlp(in_dim: int, out_dim: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for width in [in_dim] + [hidden] * (layers - 1):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(hidden, out_dim))


class PlainSAC:
    """Per-network SAC with automatic entropy tuning (Haarnoja et al. 2018)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2, lr: float = 3e-4,
                 gamma: float = 0.99, tau: float = 0.005) -> None:
        self.actor = _mlp(obs_dim, 2 * act_dim, hidden, layers)
        self.q1, self.q2 = _mlp(obs_dim + act_dim, 1, hidden, layers), _mlp(obs_dim + act_dim, 1, hidden, layers)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.optimizers = [torch.optim.Adam(p, lr=lr) for p in (self.actor.parameters(), self.q1.parameters(),
                                                                  self.q2.parameters(), [self.log_alpha])]
        self.gamma, self.tau, self.target_entropy = gamma, tau, -float(act_dim)

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(-20.0, 2.0).exp()
        u = mu + std * torch.randn_like(mu)
        logp = (-0.5 * ((u - mu) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), logp

    def update(self, obs, act, reward, next_obs, done) -> None:
        actor_opt, q1_opt, q2_opt, alpha_opt = self.optimizers
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_act, next_logp = self._sample(next_obs)
            next_in = torch.cat([next_obs, next_act], -1)
            next_q = torch.min(self.q1_target(next_in), self.q2_target(next_in)).squeeze(-1)
            target = reward + self.gamma * (1 - done) * (next_q - alpha * next_logp)
        q_in = torch.cat([obs, act], -1)
        for q, opt in ((self.q1, q1_opt), (self.q2, q2_opt)):
            loss = 0.5 * (q(q_in).squeeze(-1) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        pi_act, logp = self._sample(obs)
        pi_in = torch.cat([obs, pi_act], -1)
        actor_loss = (alpha * logp - torch.min(self.q1(pi_in), self.q2(pi_in)).squeeze(-1)).mean()
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        alpha_opt.zero_grad()
        alpha_loss.backward()
        alpha_opt.step()
        with torch.no_grad():
            for net, target_net in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, p_target in zip(net.parameters(), target_net.parameters()):
                    p_target.mul_(1 - self.tau).add_(self.tau * p)
