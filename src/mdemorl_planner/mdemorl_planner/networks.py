"""Actor and twin-critic networks: trained by SAC (mdemorl_learner), evaluated by the planner (eq. 3, eq. 10)."""

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def mlp(in_dim: int, out_dim: int, hidden_size: int, num_layers: int) -> nn.Sequential:
    """ReLU MLP with ``num_layers`` hidden layers of width ``hidden_size`` and a linear output."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_size), nn.ReLU(inplace=True)]
        width = hidden_size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def squashed_gaussian(mu: torch.Tensor, raw_log_std: torch.Tensor, eps: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The action tanh(u), u = mu + std * eps, its log-density (summed over the last dimension) and std.

    log std is ``raw_log_std`` clamped to [-20, 2]. log(1 - tanh(u)^2) is taken in the stable form
    2 (log 2 - u - softplus(-2u)).
    """
    log_std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    std = log_std.exp()
    u = mu + std * eps
    logp = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
    logp = logp - (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), logp, std


class SquashedGaussianActor(nn.Module):
    """Policy a = tanh(u), u ~ N(mu(x), std(x)^2), with log std clamped to [-20, 2]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, 2 * act_dim, hidden_size, num_layers)

    def forward(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        with_logprob: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reparameterised action in [-1, 1] and its log-density (summed over action dims).

        ``deterministic`` uses u = mu (logp is then the density at tanh(mu)); noise is
        drawn from ``generator`` when given.
        """
        mu, raw_log_std = self.net(obs).float().chunk(2, dim=-1)  # the distribution in float32, also under autocast
        if deterministic:
            action = torch.tanh(mu)
            if not with_logprob:
                return action, None
            return action, squashed_gaussian(mu, raw_log_std, torch.zeros_like(mu))[1]
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        action, logp, _ = squashed_gaussian(mu, raw_log_std, eps)
        return action, (logp if with_logprob else None)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action tanh(mu(x))."""
        return torch.tanh(self.net(obs)[..., : self.act_dim])


def twin_q_output(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:class:`TwinQ`'s width-1 output layer, ``[2, B]``, from the last hidden activation ``h`` ``[2, B, H]``.

    A multiply-and-sum, not a matmul: a width-1 bmm and its outer-product backward run as slow
    matrix-vector kernels (fwd + bwd about 2x the time of this form here).
    """
    return (h * weight.transpose(1, 2)).sum(-1) + bias[:, :, 0]


class TwinQ(nn.Module):
    """Two Q(x, a) MLPs evaluated as one batched program.

    Layer ``i`` holds stacked weights ``[2, in, out]`` and biases ``[2, 1, out]``;
    each layer is one ``baddbmm`` over the head dimension; the output layer always runs in float32. Initialisation matches
    ``nn.Linear`` (U(-1/sqrt(in), 1/sqrt(in)) for weights and biases), per head.
    """

    num_heads = 2

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden_size] * num_layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(torch.empty(2, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(2, 1, d_out).uniform_(-bound, bound)))

    def q_values(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Both heads stacked, shape ``[2, B]``."""
        h = torch.cat([obs, act], dim=-1).expand(self.num_heads, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if i < last:
                h = torch.baddbmm(b, h, w).relu_()
            else:  # Q in float32 under autocast too: bfloat16 would round a Q of 100 to a step of 0.5
                with torch.autocast(h.device.type, enabled=False):
                    h = twin_q_output(h.float(), w, b)
        return h

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q1, q2)``, each of shape ``[B]``."""
        q = self.q_values(obs, act)
        return q[0], q[1]
