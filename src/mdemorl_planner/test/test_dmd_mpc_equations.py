"""Known-answer tests for the DMD-MPC equation functions (eqs. 3, 9, 10, 11, 12, 13, 14 and MPPI)."""
import numpy as np
import pytest
import torch

from mdemorl_planner.dmd_mpc import (
    cem_elites,
    elite_weighted_mean,
    horizon_cost,
    mirror_descent_step,
    mppi_weighted_mean,
    rollout,
    sample_controls,
    shift_model,
)

torch.set_num_threads(1)


class LinearModel:
    """Exact model x' = A x + B u with reward -|x'|^2."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a = torch.as_tensor(a, dtype=torch.float32)
        self.b = torch.as_tensor(b, dtype=torch.float32)

    def step(self, obs, act, deterministic=False, generator=None):
        next_obs = obs @ self.a.T + act @ self.b.T
        return next_obs, -(next_obs ** 2).sum(dim=-1)


def test_horizon_cost_hand_computed():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    terminal_value = torch.tensor([10.0, 8.0])
    cost = horizon_cost(rewards, terminal_value, gamma=0.5)
    # -(1 + 0.5*2 + 0.25*3) - 0.125*10 = -4.0 ; -(0) - 0.125*8 = -1.0
    torch.testing.assert_close(cost, torch.tensor([-4.0, -1.0]))


def test_horizon_cost_undiscounted_is_negative_return():
    rewards = torch.tensor([2.0, -1.0, 4.0, 0.5])
    assert horizon_cost(rewards, torch.tensor(3.0), gamma=1.0).item() == pytest.approx(-8.5)


@pytest.mark.parametrize("alpha, expected", [(0.0, [0.2, -0.4]), (1.0, [1.0, 0.6]), (0.5, [0.6, 0.1])])
def test_mirror_descent_step(alpha, expected):
    mu_tilde = torch.tensor([0.2, -0.4])
    g = torch.tensor([1.0, 0.6])
    torch.testing.assert_close(mirror_descent_step(mu_tilde, g, alpha), torch.tensor(expected))


@pytest.mark.parametrize("fraction, count", [(0.1, 10), (0.01, 1), (0.07, 7), (1.0, 100), (0.001, 1)])
def test_cem_elites_are_lowest_costs(fraction, count):
    costs = torch.randn(4, 100, generator=torch.Generator().manual_seed(3))
    elites = cem_elites(costs, fraction)
    assert elites.shape == (4, count)
    expected = torch.argsort(costs, dim=1)[:, :count]
    for row in range(4):
        assert set(elites[row].tolist()) == set(expected[row].tolist())


def test_cem_elites_rejects_bad_fraction():
    with pytest.raises(ValueError):
        cem_elites(torch.zeros(1, 10), 0.0)


def test_elite_weighted_mean_equal_costs_is_plain_mean():
    controls = torch.arange(24, dtype=torch.float32).reshape(1, 4, 3, 2)
    costs = torch.full((1, 4), 7.0)
    elite_idx = torch.tensor([[0, 2, 3]])
    g = elite_weighted_mean(controls, costs, elite_idx)
    torch.testing.assert_close(g, controls[:, [0, 2, 3]].mean(dim=1))


def test_elite_weighted_mean_hand_computed():
    controls = torch.tensor([1.0, 2.0, 10.0]).reshape(1, 3, 1, 1)
    costs = torch.tensor([[1.0, 2.0, 4.0]])
    # C_max = 4 -> weights (3, 2, 0): g = (3*1 + 2*2) / 5 = 1.4, whether the worst sample is an elite or not
    for elite_idx in (torch.tensor([[0, 1, 2]]), torch.tensor([[1, 0]])):
        g = elite_weighted_mean(controls, costs, elite_idx)
        assert g.item() == pytest.approx(1.4, abs=1e-5)


def test_elite_weighted_mean_handles_negative_costs():
    controls = torch.tensor([-1.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    costs = torch.tensor([[-10.0, -6.0, -2.0]])
    # weights (8, 4): g = (8*(-1) + 4*1) / 12 = -1/3, pulled toward the best (lowest-cost) sample
    g = elite_weighted_mean(controls, costs, torch.tensor([[0, 1]]))
    assert g.item() == pytest.approx(-1.0 / 3.0, abs=1e-5)


def test_mppi_limits():
    controls = torch.tensor([[0.5, -0.2, 0.9, 0.1]]).reshape(1, 4, 1, 1)
    costs = torch.tensor([[3.0, 1.0, 2.0, 5.0]])
    assert mppi_weighted_mean(controls, costs, temperature=1e-4).item() == pytest.approx(-0.2, abs=1e-6)
    assert mppi_weighted_mean(controls, costs, temperature=1e6).item() == pytest.approx(0.325, abs=1e-5)


def test_mppi_hand_computed():
    controls = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    costs = torch.tensor([[0.0, float(np.log(3.0))]])
    # weights proportional to exp(0) = 1 and exp(-log 3) = 1/3 -> g = 1 / (4/3) = 0.75
    assert mppi_weighted_mean(controls, costs, temperature=1.0).item() == pytest.approx(0.75, abs=1e-6)


def test_shift_model_matches_analytic_linear_propagation():
    a = np.array([[1.0, 0.1], [0.0, 0.9]])
    b = np.array([[0.0], [0.1]])
    gain = np.array([[-0.5, -0.3]])
    x0 = np.array([[0.4, -0.2], [1.0, 0.5]])
    policy = lambda x: x @ torch.as_tensor(gain.T, dtype=torch.float32)
    mu_tilde, states = shift_model(policy, LinearModel(a, b), torch.as_tensor(x0, dtype=torch.float32), horizon=4)
    closed_loop = a + b @ gain
    for h in range(4):
        x_h = x0 @ np.linalg.matrix_power(closed_loop, h).T
        np.testing.assert_allclose(states[:, h].numpy(), x_h, atol=1e-6)
        np.testing.assert_allclose(mu_tilde[:, h].numpy(), x_h @ gain.T, atol=1e-6)
    np.testing.assert_allclose(states[:, 4].numpy(), x0 @ np.linalg.matrix_power(closed_loop, 4).T, atol=1e-6)


def test_sample_controls_statistics_and_clipping():
    mu_tilde = torch.tensor([[[0.0, 0.95]]])
    controls = sample_controls(mu_tilde, torch.tensor([0.2, 0.5]), 20_000, torch.Generator().manual_seed(0))
    assert controls.shape == (1, 20_000, 1, 2)
    assert controls.abs().max().item() <= 1.0
    assert controls[..., 0].mean().item() == pytest.approx(0.0, abs=0.01)
    assert controls[..., 0].std().item() == pytest.approx(0.2, abs=0.01)
    assert (controls[..., 1] == 1.0).float().mean().item() == pytest.approx(0.46, abs=0.02)  # P(N(0.95, .5) > 1)


def test_rollout_masks_after_termination():
    model = LinearModel(np.eye(1), np.eye(1))
    terminate_above = lambda x, u, x_next: x_next[..., 0] > 1.5
    x0 = torch.tensor([[1.0], [-1.0]])
    controls = torch.full((2, 1, 4, 1), 0.3)
    states, rewards, alive = rollout(model, x0, controls, terminate_above)
    np.testing.assert_allclose(states[0, 0, :, 0].numpy(), [1.0, 1.3, 1.6, 1.6, 1.6], atol=1e-6)
    np.testing.assert_allclose(rewards[0, 0].numpy(), [-1.69, -2.56, 0.0, 0.0], atol=1e-5)
    assert alive[0, 0].tolist() == [True, False, False, False]
    np.testing.assert_allclose(states[1, 0, :, 0].numpy(), [-1.0, -0.7, -0.4, -0.1, 0.2], atol=1e-6)
    assert alive[1, 0].tolist() == [True] * 4
