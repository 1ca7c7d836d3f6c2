"""DMD-MPC inner loop of M-DeMoRL (paper sec. III "DMD-MPC with Exponential family", sec. IV.A, Algorithm 1).

Shapes: B start states, M sampled control sequences per start state, horizon H, state dim n,
action dim m. Actions live in [-1, 1]. Costs are negated rewards (c = -r).
"""
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

PolicyMean = Callable[[torch.Tensor], torch.Tensor]  # x [..., n] -> pi_theta mean action [..., m]
ValueFunction = Callable[[torch.Tensor], torch.Tensor]  # x [..., n] -> V_zeta(x) [...]
TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, u, x') -> bool [...]
COMPUTE_DTYPES = ("float32", "bfloat16")


class DynamicsModel(Protocol):
    """What the planner needs from f_phi (e.g. ``ProbabilisticEnsemble``)."""

    def step(self, obs: torch.Tensor, act: torch.Tensor, deterministic: bool = False,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [..., n], u [..., m]) -> (x' [..., n], r [...])."""


def horizon_cost(rewards: torch.Tensor, terminal_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """H-step cost C = sum_h gamma^h c_h + gamma^H c_H with c_h = -r_h and c_H = -V(x_H).

    rewards [..., H], terminal_value [...] -> C [...].
    """
    horizon = rewards.shape[-1]
    discounts = gamma ** torch.arange(horizon, dtype=rewards.dtype, device=rewards.device)
    return -(rewards * discounts).sum(dim=-1) - gamma ** horizon * terminal_value  # eq. 3


def shift_model(policy_mean: PolicyMean, model: DynamicsModel, x0: torch.Tensor,
                horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift model Phi_t: roll the outer-loop policy mean through the model from x0.

    The nominal trajectory uses the deterministic model step, and mu~_h = pi_theta(x~_h) (clipped
    to [-1, 1]) is one open-loop sequence per start state, shared by all M samples. The natural
    parameter eta~ = Sigma^-1 mu~ is left implicit: everything downstream works with mu~.
    x0 [B, n] -> (mu_tilde [B, H, m], nominal_states [B, H+1, n]).
    """
    states, means = [x0], []
    for _ in range(horizon):
        means.append(policy_mean(states[-1]).clamp(-1.0, 1.0))  # eq. 10: mu~_h = pi_theta(x~_h)
        states.append(model.step(states[-1], means[-1], deterministic=True)[0])
    return torch.stack(means, dim=1), torch.stack(states, dim=1)


def sample_controls(mu_tilde: torch.Tensor, sigma: float | torch.Tensor, num_samples: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """u ~ N(mu~, sigma^2 I) per step, clipped to [-1, 1]: mu_tilde [B, H, m] -> U [B, M, H, m]."""
    batch, horizon, act_dim = mu_tilde.shape
    noise = torch.randn(batch, num_samples, horizon, act_dim, generator=generator, dtype=mu_tilde.dtype,
                        device=mu_tilde.device)
    return (mu_tilde.unsqueeze(1) + sigma * noise).clamp(-1.0, 1.0)  # eq. 11


def rollout(model: DynamicsModel, x0: torch.Tensor, controls: torch.Tensor,
            termination_fn: TerminationFn | None = None,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Simulate x_{h+1} ~ f_phi(x_h, u_h) for all B*M sequences as one flat batch per step.

    x0 [B, n], controls [B, M, H, m] -> (states [B, M, H+1, n], rewards [B, M, H], alive [B, M, H]).
    alive[..., h] is True while x_{h+1} is non-terminal. The reward of the terminating transition
    counts; later rewards are zeroed and later states frozen at the terminal state, so the
    caller must drop the terminal value where alive[..., -1] is False.
    """
    batch, num_samples, horizon, act_dim = controls.shape
    # sample-major rows (m, b): the model's contiguous per-member blocks then mix every start state's samples
    x = x0.unsqueeze(0).expand(num_samples, batch, -1).reshape(num_samples * batch, -1)
    flat_controls = controls.transpose(0, 1).reshape(num_samples * batch, horizon, act_dim)
    alive = torch.ones(batch * num_samples, dtype=torch.bool, device=x0.device)
    states, rewards, alive_masks = [x], [], []
    for h in range(horizon):
        u = flat_controls[:, h]
        next_x, reward = model.step(x, u, generator=generator)  # eq. 12
        rewards.append(torch.where(alive, reward, torch.zeros_like(reward)))
        next_x = torch.where(alive.unsqueeze(-1), next_x, x)
        if termination_fn is not None:
            alive = alive & ~termination_fn(x, u, next_x).to(torch.bool)
        x = next_x
        states.append(x)
        alive_masks.append(alive)
    return (torch.stack(states, dim=1).reshape(num_samples, batch, horizon + 1, -1).transpose(0, 1),
            torch.stack(rewards, dim=1).reshape(num_samples, batch, horizon).transpose(0, 1),
            torch.stack(alive_masks, dim=1).reshape(num_samples, batch, horizon).transpose(0, 1))


def cem_elites(costs: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices [B, k] of the k = max(1, ceil(p M)) lowest-cost samples per start state, costs [B, M].

    Selecting the top p % is the elite-fraction estimate of the CEM objective; the cost of the
    worst elite plays the role of C_t,max.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"elite fraction must be in (0, 1], got {fraction}")
    num_elites = max(1, math.ceil(fraction * costs.shape[1] - 1e-9))  # tolerance: 0.07 * 100 -> 7, not 8
    return torch.topk(costs, num_elites, dim=1, largest=False).indices  # eq. 13


def elite_weighted_mean(controls: torch.Tensor, costs: torch.Tensor, elite_idx: torch.Tensor,
                        eps: float = 1e-6) -> torch.Tensor:
    """Reward-weighted mean g of the elite control sequences: U [B, M, H, m] -> g [B, H, m].

    The paper writes g = sum C_i U_i / sum C_i yet calls it "the reward weighted mean"; weighting by
    raw cost would favour the worse elites and is undefined for negative costs. The weights used
    here are non-negative and favour low cost: w_i = (C_max - C_i) + eps over the elites, where
    C_max is the highest cost among all M samples of that start state. Every elite gets a positive
    weight, and with equal costs g is the plain elite mean.
    """
    elite_costs = costs.gather(1, elite_idx)
    weights = costs.max(dim=1, keepdim=True).values - elite_costs + eps
    weights = weights / weights.sum(dim=1, keepdim=True)
    batch, num_elites = elite_idx.shape
    elite_controls = controls[torch.arange(batch, device=elite_idx.device).unsqueeze(1), elite_idx]
    return (weights.view(batch, num_elites, 1, 1) * elite_controls).sum(dim=1)  # eq. 14


def mirror_descent_step(mu_tilde: torch.Tensor, g: torch.Tensor, alpha: float) -> torch.Tensor:
    """DMD update of the expectation parameter: mu = (1 - alpha) mu~ + alpha g."""
    return (1.0 - alpha) * mu_tilde + alpha * g  # eq. 9


def mppi_weighted_mean(controls: torch.Tensor, costs: torch.Tensor, temperature: float) -> torch.Tensor:
    """MPPI mean (Williams et al. 2017): weights softmax(-C / lambda) over all M samples -> g [B, H, m]."""
    weights = torch.softmax(-costs / temperature, dim=1)
    return (weights.unsqueeze(-1).unsqueeze(-1) * controls).sum(dim=1)


@dataclass
class PlannerConfig:
    """DMD-MPC settings. The paper fixes H (5 -> 15, see ``schedules``) and M = 100.

    elite_fraction: p of eq. 13. The paper's is 10 %; 1 % (the best of M = 100 samples) with alpha = 1
        learned fastest here on HalfCheetah, Ant, Hopper and the leg (bench/README.md, Figs. 2-4).
    alpha: DMD step size of eq. 9; not given in the paper. 1 replaces the policy's sequence by the elite
        mean; with p = 10 % half a step (0.5) did better than a whole one.
    sigma: std of the Gaussian control distribution (Sigma = sigma^2 I, eq. 10-11); not given in the
        paper. 0.3 explores about a third of the half-range of the [-1, 1] action box.
    weighting: "cem" (elite fraction, eqs. 13-14, M-DeMoRL) or "mppi" (softmax weights). With
        "mppi" and alpha = 1 the planner produces MoPAC-style improved rollouts.
    max_batch_rows: bound on B * M rows simulated at once; larger batches run in chunks of start
        states. Chunks of about 10k rows ran ~25 % faster than 200k on a 2-core CPU (activations stay in cache).
    compute_dtype: "float32", or "bfloat16" to run the matmuls of the model, policy and critic under the
        device's autocast (states accumulate and costs are ranked in float32). See bench/speed.py.
    device: where the planner draws its noise and rolls out ("cpu", "cuda", ...); the model, policy and value
        function must compute there.
    """

    horizon: int = 5
    num_samples: int = 100
    elite_fraction: float = 0.01
    alpha: float = 1.0
    sigma: float = 0.3
    gamma: float = 0.99
    weighting: str = "cem"
    mppi_temperature: float = 1.0
    max_batch_rows: int = 10_000
    compute_dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.weighting not in ("cem", "mppi"):
            raise ValueError(f"weighting must be 'cem' or 'mppi', got {self.weighting!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")

    def autocast(self) -> torch.autocast:
        """The autocast context of ``compute_dtype`` on the device's type (disabled for float32)."""
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16,
                              enabled=self.compute_dtype == "bfloat16")


class DMDMPCPlanner:
    """Batched DMD-MPC: improves pi_theta's H-step action sequences with f_phi and V_zeta (Algorithm 1, lines 10-16)."""

    def __init__(self, config: PlannerConfig, model: DynamicsModel, policy_mean: PolicyMean,
                 value_fn: ValueFunction, termination_fn: TerminationFn | None = None, seed: int = 0) -> None:
        self.config = config
        self.model = model
        self.policy_mean = policy_mean
        self.value_fn = value_fn
        self.termination_fn = termination_fn
        self.generator = torch.Generator(config.device).manual_seed(seed)

    def _plan_chunk(self, x0: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        mu_tilde, _ = shift_model(self.policy_mean, self.model, x0, cfg.horizon)
        controls = sample_controls(mu_tilde, cfg.sigma, cfg.num_samples, self.generator)
        states, rewards, alive = rollout(self.model, x0, controls, self.termination_fn, self.generator)
        final_states = states[:, :, -1]
        values = self.value_fn(final_states.reshape(-1, final_states.shape[-1])).reshape(alive.shape[:2])
        terminal_value = torch.where(alive[:, :, -1], values, torch.zeros_like(values))
        costs = horizon_cost(rewards, terminal_value, cfg.gamma)
        if cfg.weighting == "cem":
            g = elite_weighted_mean(controls, costs, cem_elites(costs, cfg.elite_fraction))
        else:
            g = mppi_weighted_mean(controls, costs, cfg.mppi_temperature)
        return mirror_descent_step(mu_tilde, g, cfg.alpha)

    @torch.no_grad()
    def plan(self, x0: torch.Tensor) -> torch.Tensor:
        """Updated expectation parameters mu_t [B, H, m] for start states x0 [B, n] on the config's device
        (eqs. 10-14, 9)."""
        chunk = max(1, self.config.max_batch_rows // self.config.num_samples)
        with self.config.autocast():
            return torch.cat([self._plan_chunk(part).float() for part in x0.split(chunk)], dim=0)

    @torch.no_grad()
    def imagine(self, x0: np.ndarray) -> dict[str, np.ndarray]:
        """Plan mu_t, roll it through f_phi and return the transitions for D_MPC (Algorithm 1, lines 14-15).

        Returns flat arrays obs, act, reward, next_obs, terminated holding, per start state, every
        transition up to and including the first predicted termination (start-state major order).
        """
        start = torch.as_tensor(x0, dtype=torch.float32, device=self.config.device)
        mu = self.plan(start)
        with self.config.autocast():
            states, rewards, alive = rollout(self.model, start, mu.unsqueeze(1), self.termination_fn, self.generator)
        states, rewards, alive = states[:, 0].float(), rewards[:, 0].float(), alive[:, 0]
        taken = torch.cat([torch.ones_like(alive[:, :1]), alive[:, :-1]], dim=1)
        return {
            "obs": states[:, :-1][taken].cpu().numpy(),
            "act": mu[taken].cpu().numpy(),
            "reward": rewards[taken].cpu().numpy(),
            "next_obs": states[:, 1:][taken].cpu().numpy(),
            "terminated": (~alive)[taken].cpu().numpy(),
        }
