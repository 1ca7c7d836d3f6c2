"""Policy and twin-critic networks: log-probabilities, bounds and the fused twin Q."""
import torch
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from mdemorl_planner.networks import LOG_STD_MAX, LOG_STD_MIN, SquashedGaussianActor, TwinQ, mlp

torch.set_num_threads(1)

OBS, ACT = 5, 3


def test_mlp_shape():
    net = mlp(4, 7, hidden_size=8, num_layers=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 4
    assert net(torch.zeros(2, 4)).shape == (2, 7)


def test_actor_logprob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS, ACT, 32, 2)
    obs = torch.randn(64, OBS)
    action, logp = actor(obs, generator=torch.Generator().manual_seed(1))

    mu, log_std = actor.net(obs).chunk(2, -1)
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    u = mu + log_std.exp() * eps
    base = Independent(Normal(mu, log_std.exp()), 1)
    tanh = TanhTransform()
    expected = base.log_prob(u) - tanh.log_abs_det_jacobian(u, torch.tanh(u)).sum(-1)
    dist = TransformedDistribution(base, [TanhTransform(cache_size=1)])
    via_dist = dist.log_prob(tanh(u))  # cache: evaluated at the same pre-tanh sample

    torch.testing.assert_close(action, torch.tanh(u))
    assert logp.shape == (64,)
    torch.testing.assert_close(logp, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(logp, via_dist, rtol=0, atol=1e-5)


def test_actor_actions_bounded_and_logprob_finite_when_saturated():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS, ACT, 32, 2)
    obs = 1e3 * torch.randn(256, OBS)
    action, logp = actor(obs)
    assert action.abs().max() <= 1.0
    assert torch.isfinite(logp).all()
    det, _ = actor(obs, deterministic=True, with_logprob=False)
    torch.testing.assert_close(det, actor.mean_action(obs), rtol=0, atol=0)
    mean = actor.mean_action(obs[:4] / 1e3)
    assert mean.abs().max() < 1.0


def test_twin_q_fused_equals_per_head_reference():
    torch.manual_seed(0)
    q = TwinQ(OBS, ACT, hidden_size=16, num_layers=2)
    obs, act = torch.randn(10, OBS), torch.randn(10, ACT)
    q1, q2 = q(obs, act)
    refs = []
    for k in range(2):
        h = torch.cat([obs, act], -1)
        for i, (w, b) in enumerate(zip(q.weights, q.biases)):
            h = h @ w[k] + b[k, 0]
            if i < len(q.weights) - 1:
                h = torch.relu(h)
        refs.append(h.squeeze(-1))
    torch.testing.assert_close(q1, refs[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(q2, refs[1], rtol=1e-6, atol=1e-6)
    assert q1.shape == (10,) and not torch.allclose(q1, q2)  # independently initialised heads
