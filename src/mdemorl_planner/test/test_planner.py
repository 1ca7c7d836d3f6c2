"""DMDMPCPlanner on an exact 1-D linear model x' = x + u with reward -x'^2 (optimum u* = -x0)."""
import warnings

import numpy as np
import pytest
import torch

from mdemorl_planner.dmd_mpc import DMDMPCPlanner, PlannerConfig, rollout
from mdemorl_planner.ensemble import ProbabilisticEnsemble

torch.set_num_threads(1)
DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


class IntegratorModel:
    """x' = x + u, reward -x'^2; records the largest batch it was asked to step."""

    def __init__(self) -> None:
        self.max_rows = 0

    def step(self, obs, act, deterministic=False, generator=None):
        self.max_rows = max(self.max_rows, obs.reshape(-1, 1).shape[0])
        next_obs = obs + act
        return next_obs, -(next_obs[..., 0] ** 2)


def constant_policy(value: float):
    return lambda x: torch.full((*x.shape[:-1], 1), value)


def zero_value(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(x.shape[:-1])


X0 = torch.tensor([[0.5], [-0.8], [0.2]])


@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("weighting, alpha", [("cem", 0.5), ("mppi", 1.0)])
def test_dmd_step_moves_toward_optimum(horizon, weighting, alpha):
    config = PlannerConfig(horizon=horizon, num_samples=200, sigma=0.5, alpha=alpha, weighting=weighting,
                           mppi_temperature=0.05)
    planner = DMDMPCPlanner(config, IntegratorModel(), constant_policy(0.3), zero_value, seed=1)
    mu = planner.plan(X0)
    assert mu.shape == (3, horizon, 1)
    u_star = -X0[:, 0]
    assert torch.all((mu[:, 0, 0] - u_star).abs() < (0.3 - u_star).abs())


def test_alpha_zero_returns_policy_sequence():
    planner = DMDMPCPlanner(PlannerConfig(horizon=2, alpha=0.0), IntegratorModel(), constant_policy(0.3), zero_value)
    torch.testing.assert_close(planner.plan(X0), torch.full((3, 2, 1), 0.3))


class ZeroRewardIntegrator(IntegratorModel):
    def step(self, obs, act, deterministic=False, generator=None):
        return obs + act, torch.zeros(obs.shape[:-1])


def test_terminal_value_enters_cost():
    # rewards are all zero: only the terminal cost -V(x_H) = 100 x_H^2 can pull the action to u* = -x0
    value = lambda x: -100.0 * x[..., 0] ** 2
    config = PlannerConfig(horizon=1, num_samples=200, sigma=0.5, alpha=1.0)
    planner = DMDMPCPlanner(config, ZeroRewardIntegrator(), constant_policy(0.0), value, seed=2)
    mu = planner.plan(torch.tensor([[0.6]]))
    assert mu[0, 0, 0].item() == pytest.approx(-0.6, abs=0.1)


def test_plan_chunks_large_batches():
    model = IntegratorModel()
    config = PlannerConfig(horizon=2, num_samples=50, max_batch_rows=500)
    planner = DMDMPCPlanner(config, model, constant_policy(0.0), zero_value)
    mu = planner.plan(torch.linspace(-0.9, 0.9, 37).unsqueeze(1))
    assert mu.shape == (37, 2, 1)
    assert model.max_rows == 500


def test_imagine_returns_transitions_up_to_termination():
    terminate_below = lambda x, u, x_next: x_next[..., 0] < 0.05
    config = PlannerConfig(horizon=4, num_samples=100, sigma=0.3)
    planner = DMDMPCPlanner(config, IntegratorModel(), constant_policy(-0.3), zero_value, terminate_below, seed=4)
    x0 = np.array([[0.5], [3.0]], dtype=np.float32)
    batch = planner.imagine(x0)
    assert set(batch) == {"obs", "act", "reward", "next_obs", "terminated"}
    np.testing.assert_allclose(batch["next_obs"], batch["obs"] + batch["act"], atol=1e-6)
    np.testing.assert_allclose(batch["reward"], -batch["next_obs"][:, 0] ** 2, atol=1e-6)
    # start 3.0 cannot reach < 0.05 in 4 steps of |u| <= 1: its 4 transitions are last, none terminal
    np.testing.assert_allclose(batch["obs"][-4, 0], 3.0)
    assert not batch["terminated"][-4:].any()
    # start 0.5: transitions chain from 0.5 and stop at the first predicted termination
    first = batch["obs"].shape[0] - 4
    assert 1 <= first <= 4
    np.testing.assert_allclose(batch["obs"][0, 0], 0.5)
    np.testing.assert_allclose(batch["obs"][1:first], batch["next_obs"][:first - 1])
    assert batch["terminated"][:first].tolist() == [False] * (first - 1) + [batch["next_obs"][first - 1, 0] < 0.05]
    assert batch["obs"].dtype == np.float32 and batch["terminated"].dtype == np.bool_


def test_config_rejects_unknown_weighting():
    with pytest.raises(ValueError):
        PlannerConfig(weighting="mean")


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_rollout_gives_every_start_state_an_equal_share_of_each_elite(compute_dtype):
    """Elite k of a 5-member ensemble predicts x' = x + k exactly: at each step, each start state's
    M = 10 samples are spread two per elite (TS-1 with balanced, sample-major blocks)."""
    model = ProbabilisticEnsemble(1, 1, num_members=5, num_elites=5, hidden_size=4, num_layers=1)
    with torch.no_grad():
        model.weights[-1].zero_()
        model.biases[-1].zero_()
        model.biases[-1][:, 0, 0] = torch.arange(5.0)  # mean of dx
        model.max_logvar.fill_(-40.0)
        model.min_logvar.fill_(-50.0)
    controls = torch.zeros(3, 10, 2, 1)
    with PlannerConfig(compute_dtype=compute_dtype).autocast():
        states, _, _ = rollout(model, X0, controls, generator=torch.Generator().manual_seed(0))
    for h in range(2):
        offsets = (states[:, :, h + 1, 0] - states[:, :, h, 0]).round()
        for per_start in offsets:
            assert sorted(per_start.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]

@pytest.mark.parametrize("weighting", ["cem", "mppi"])
def test_plan_makes_every_tensor_on_the_start_states_device(weighting):
    """On the meta device, any op that mixes in a tensor made on the CPU raises. The generator stays on the CPU
    (meta has none; meta noise may be drawn from it)."""
    terminate_above = lambda x, u, x_next: x_next[..., 0] > 0.9  # noqa: E731
    planner = DMDMPCPlanner(PlannerConfig(horizon=3, num_samples=8, weighting=weighting), IntegratorModel(),
                            lambda x: 0.3 * torch.tanh(x), lambda x: -x[..., 0], terminate_above)
    mu = planner.plan(X0.to("meta"))
    assert mu.device.type == "meta" and mu.shape == (3, 3, 1)


def test_autocast_is_the_devices():
    with PlannerConfig(compute_dtype="bfloat16").autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU build of torch warns that it disables CUDA autocast
        on_gpu = PlannerConfig(compute_dtype="bfloat16", device="cuda").autocast()
    with on_gpu:
        assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cuda") == torch.cuda.is_available()


@pytest.mark.parametrize("device", DEVICES)
def test_plan_and_imagine_on_the_device(device):
    """The planner's noise and rollouts are on config.device; imagine takes and hands back numpy."""
    planner = DMDMPCPlanner(PlannerConfig(horizon=2, num_samples=10, device=device), IntegratorModel(),
                            lambda x: 0.3 * torch.tanh(x), lambda x: -x[..., 0])
    assert planner.generator.device == torch.device(device)
    assert planner.plan(X0.to(device)).device == torch.device(device)
    batch = planner.imagine(X0.numpy())
    assert all(isinstance(v, np.ndarray) for v in batch.values()) and batch["obs"].shape == (6, 1)
