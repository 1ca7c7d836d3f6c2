"""NumpyActor computes what the torch SquashedGaussianActor computes: mean actions, noisy actions, log-std clamps."""

import numpy as np
import pytest
import torch

from mdemorl_learner.config import TrainConfig
from mdemorl_learner import numpy_actor
from mdemorl_learner.numpy_actor import NumpyActor
from mdemorl_planner import networks
from mdemorl_planner.networks import SquashedGaussianActor
from stochlite_bringup.task_names import TASK_NAMES
from stochlite_bringup.tasks.dimensions import task_dimensions

DEFAULTS = TrainConfig()
# every task at the configs' actor size, plus the small actors the tests use
SIZES = [(task_dimensions(name).obs_dim, task_dimensions(name).act_dim, DEFAULTS.hidden_size, DEFAULTS.num_layers)
         for name in TASK_NAMES] + [(10, 2, 8, 1), (10, 2, 16, 1)]
TOLERANCE = 1e-5


def actors(obs_dim: int, act_dim: int, hidden: int, layers: int, seed: int = 0
           ) -> tuple[SquashedGaussianActor, NumpyActor]:
    torch.manual_seed(seed)
    actor = SquashedGaussianActor(obs_dim, act_dim, hidden, layers).eval()
    return actor, NumpyActor.from_state_dict(actor.state_dict())


def observations(obs_dim: int, batch: int = 64, seed: int = 0) -> np.ndarray:
    return (3.0 * np.random.default_rng(seed).standard_normal((batch, obs_dim))).astype(np.float32)


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "obs{}-act{}-{}x{}".format(*s))
def test_mean_and_noisy_actions_match_the_torch_actor(sizes):
    obs_dim, act_dim, hidden, layers = sizes
    actor, twin = actors(*sizes)
    assert (twin.obs_dim, twin.act_dim) == (obs_dim, act_dim)
    obs = observations(obs_dim)
    with torch.no_grad():
        mean = actor.mean_action(torch.from_numpy(obs)).numpy()
        sampled, _ = actor(torch.from_numpy(obs), with_logprob=False, generator=torch.Generator().manual_seed(7))
    eps = torch.randn((len(obs), act_dim), generator=torch.Generator().manual_seed(7)).numpy()  # the same noise
    np.testing.assert_allclose(twin.mean_action(obs), mean, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(twin.noisy_action(obs, eps), sampled.numpy(), atol=TOLERANCE, rtol=0)
    single = twin.mean_action(obs[0])  # one observation, as the runner acts
    assert single.shape == (act_dim,) and single.dtype == np.float32
    np.testing.assert_allclose(single, mean[0], atol=TOLERANCE, rtol=0)


def test_log_std_is_clamped_as_in_torch():
    assert (numpy_actor.LOG_STD_MIN, numpy_actor.LOG_STD_MAX) == (networks.LOG_STD_MIN, networks.LOG_STD_MAX)
    actor, _ = actors(10, 2, 16, 1)
    with torch.no_grad():  # raw log std far above 2 for one action dim, far below -20 for the other
        actor.net[-1].bias[2:] = torch.tensor([40.0, -60.0])
    twin = NumpyActor.from_state_dict(actor.state_dict())
    obs = observations(10, batch=8)
    _, std = twin.distribution(obs)
    np.testing.assert_allclose(std, np.broadcast_to(np.exp([2.0, -20.0]), std.shape).astype(np.float32), rtol=1e-6)
    eps = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
    with torch.no_grad():
        out = actor.net(torch.from_numpy(obs))
        mu, raw_log_std = out[:, :2], out[:, 2:]
        expected = torch.tanh(mu + raw_log_std.clamp(-20.0, 2.0).exp() * torch.from_numpy(eps)).numpy()
    np.testing.assert_allclose(twin.noisy_action(obs, eps), expected, atol=TOLERANCE, rtol=0)


def test_samples_take_float32_standard_normal_noise_from_the_generator():
    _, twin = actors(10, 2, 8, 1)
    obs = observations(10, batch=1)[0]
    drawn = twin.sample(obs, np.random.default_rng(3))
    eps = np.random.default_rng(3).standard_normal(2, dtype=np.float32)
    np.testing.assert_array_equal(drawn, twin.noisy_action(obs, eps))
    batch = observations(10, batch=5)
    assert twin.sample(batch, np.random.default_rng(3)).shape == (5, 2)
    many = twin.sample(np.broadcast_to(obs, (20_000, 10)), np.random.default_rng(4))
    mu, std = twin.distribution(obs)  # tanh(u), u ~ N(mu, std^2): atanh of the samples has that mean and std
    u = np.arctanh(np.clip(many.astype(np.float64), -1 + 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(u.mean(0), mu, atol=4 * std.max() / np.sqrt(len(u)))
    np.testing.assert_allclose(u.std(0), std, rtol=0.03)


def test_state_dicts_that_are_no_actor_are_rejected():
    actor, _ = actors(10, 2, 8, 1)
    state = {key: value.numpy() for key, value in actor.state_dict().items()}
    for broken, problem in (({**state, "log_alpha": np.zeros(1)}, "unexpected entry 'log_alpha'"),
                            ({k: v for k, v in state.items() if k != "net.2.bias"}, "lacks a weight or bias"),
                            ({**state, "net.2.weight": np.zeros((4, 9), np.float32)}, "do not chain"),
                            ({**state, "net.2.weight": np.zeros((3, 8), np.float32),
                              "net.2.bias": np.zeros(3, np.float32)}, "not 2 \\* act_dim")):
        with pytest.raises(ValueError, match=problem):
            NumpyActor.from_state_dict(broken)
