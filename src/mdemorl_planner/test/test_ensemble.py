"""ProbabilisticEnsemble: fitting a known linear system, elites, batched forward, state_dict round-trip."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mdemorl_planner.ensemble import RANGE_MARGIN, ProbabilisticEnsemble

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 3, 2
A = np.array([[0.1, -0.2, 0.0], [0.05, 0.0, 0.1], [0.0, 0.2, -0.1]])
B = np.array([[0.3, 0.0], [0.0, -0.2], [0.1, 0.1]])
C = np.array([1.0, -0.5, 0.25])
DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def linear_data(num: int, seed: int, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (num, OBS_DIM)).astype(np.float32)
    act = rng.uniform(-1, 1, (num, ACT_DIM)).astype(np.float32)
    next_obs = (obs + obs @ A.T + act @ B.T + noise * rng.standard_normal((num, OBS_DIM))).astype(np.float32)
    reward = (obs @ C + noise * rng.standard_normal(num)).astype(np.float32)
    return obs, act, reward, next_obs


def reference_member_means(model: ProbabilisticEnsemble, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Per-member loop with plain matmuls: [K, N, obs_dim + 1] predicted means."""
    x = (torch.cat([obs, act], dim=-1) - model.input_mean) / model.input_std
    outputs = []
    for k in range(model.num_members):
        h = x
        for layer, (w, b) in enumerate(zip(model.weights, model.biases)):
            h = h @ w[k] + b[k, 0]
            if layer < len(model.weights) - 1:
                h = F.silu(h)
        outputs.append(h[:, :OBS_DIM + 1])
    return torch.stack(outputs).detach()


@pytest.fixture(scope="module")
def fitted():
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=5, num_elites=3, hidden_size=64, num_layers=2,
                                  seed=0)
    stats = model.fit(*linear_data(2000, seed=1), max_epochs=40)
    return model, stats


def test_fit_learns_linear_system(fitted):
    model, stats = fitted
    assert stats["val_loss"] < 1e-3
    assert 1 <= stats["epochs"] <= 40
    obs, act, reward, next_obs = linear_data(500, seed=7, noise=0.0)
    pred_obs, pred_reward = model.step(torch.as_tensor(obs), torch.as_tensor(act), deterministic=True)
    assert np.abs(pred_obs.numpy() - next_obs).max() < 0.1
    assert np.abs(pred_reward.numpy() - reward).max() < 0.1
    assert np.mean((pred_obs.numpy() - next_obs) ** 2) < 1e-3


def test_stochastic_step_noise_matches_learned_variance(fitted):
    model, _ = fitted
    obs, act, _, _ = linear_data(4000, seed=8, noise=0.0)
    obs_t, act_t = torch.as_tensor(obs), torch.as_tensor(act)
    mean_obs, _ = model.step(obs_t, act_t, deterministic=True)
    sample_obs, _ = model.step(obs_t, act_t, generator=torch.Generator().manual_seed(0))
    spread = (sample_obs - mean_obs).std().item()
    assert 0.003 < spread < 0.05  # data noise std is 0.01


def test_elites_have_lowest_validation_mse():
    obs, act, reward, next_obs = linear_data(600, seed=2)
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=6, num_elites=2, hidden_size=32, num_layers=2,
                                  seed=5)
    # holdout_fraction=0 validates on the whole (training) set, so the MSEs can be recomputed here
    stats = model.fit(obs, act, reward, next_obs, holdout_fraction=0.0, max_epochs=3)
    target = torch.as_tensor(np.concatenate([next_obs - obs, reward[:, None]], axis=1))
    mse = ((reference_member_means(model, torch.as_tensor(obs), torch.as_tensor(act)) - target) ** 2).mean(dim=(1, 2))
    elite_mse = mse[model.elites]
    others = mse[[k for k in range(6) if k not in model.elites]]
    assert len(model.elites) == 2
    assert elite_mse.max().item() <= others.min().item() * (1 + 1e-5)
    assert stats["val_loss"] == pytest.approx(elite_mse.mean().item(), rel=1e-4)


def test_batched_forward_equals_per_member_reference():
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=4, num_elites=3, hidden_size=16, num_layers=3,
                                  seed=3)
    with torch.no_grad():
        model.input_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5]))
        model.input_std.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0]))
        model.elite_indices.copy_(torch.tensor([3, 0, 2]))
        model.max_logvar.fill_(-40.0)  # sampling noise ~1e-9: a stochastic step returns its member's mean
        model.min_logvar.fill_(-50.0)
    obs, act = torch.randn(301, OBS_DIM), torch.randn(301, ACT_DIM)
    reference = reference_member_means(model, obs, act)[[3, 0, 2]]

    next_obs, reward = model.step(obs, act, deterministic=True)
    torch.testing.assert_close(next_obs, obs + reference[..., :OBS_DIM].mean(dim=0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reward, reference[..., OBS_DIM].mean(dim=0), atol=1e-5, rtol=1e-5)

    assignments = set()
    for seed in range(6):
        next_obs, reward = model.step(obs, act, generator=torch.Generator().manual_seed(seed))
        prediction = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)
        distance = (prediction.unsqueeze(0) - reference).abs().amax(dim=-1)  # [elites, N]
        assert distance.min(dim=0).values.max().item() < 1e-5  # every row is one elite member's prediction
        member = distance.argmin(dim=0)
        # TS-1: blocks of ceil(301 / 3) = 101 rows (the last one padded), each to a different elite
        blocks = [member[start:start + 101] for start in (0, 101, 202)]
        assert all((block == block[0]).all() for block in blocks)
        assignments.add(tuple(int(block[0]) for block in blocks))
    assert all(sorted(a) == [0, 1, 2] for a in assignments) and len(assignments) > 1  # a new permutation per call


def test_step_keeps_leading_batch_shape(fitted):
    model, _ = fitted
    next_obs, reward = model.step(torch.zeros(4, 6, OBS_DIM), torch.zeros(4, 6, ACT_DIM))
    assert next_obs.shape == (4, 6, OBS_DIM) and reward.shape == (4, 6)
    assert next_obs.dtype == torch.float32


def test_state_dict_round_trip(fitted):
    model, _ = fitted
    clone = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=5, num_elites=3, hidden_size=64, num_layers=2,
                                  seed=99)
    clone.load_state_dict(model.state_dict())
    assert clone.elites == model.elites
    obs, act = torch.randn(50, OBS_DIM), torch.randn(50, ACT_DIM)
    for deterministic in (True, False):
        expected = model.step(obs, act, deterministic, torch.Generator().manual_seed(4))
        actual = clone.step(obs, act, deterministic, torch.Generator().manual_seed(4))
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_predictions_stay_within_the_fitted_range_plus_margin(fitted):
    model, _ = fitted
    obs, _, reward, next_obs = linear_data(2000, seed=1)  # the fixture's data
    states = np.concatenate([obs, next_obs])
    span = states.max(0) - states.min(0)
    np.testing.assert_allclose(model.output_low[:OBS_DIM].numpy(), states.min(0) - RANGE_MARGIN * span, atol=1e-5)
    np.testing.assert_allclose(model.output_high[OBS_DIM].item(), reward.max() + RANGE_MARGIN * np.ptp(reward),
                               atol=1e-5)
    far = torch.full((7, OBS_DIM), 50.0)  # far outside the data: the linear system would map it to ~65
    next_far, reward_far = model.step(far, torch.ones(7, ACT_DIM), deterministic=True)
    torch.testing.assert_close(next_far, model.output_high[:OBS_DIM].expand(7, -1))
    assert (reward_far >= model.output_low[OBS_DIM]).all() and (reward_far <= model.output_high[OBS_DIM]).all()
    inside, _ = model.step(torch.as_tensor(obs[:100]), torch.zeros(100, ACT_DIM), deterministic=True)
    assert (inside > model.output_low[:OBS_DIM]).all() and (inside < model.output_high[:OBS_DIM]).all()


def test_an_unfitted_model_does_not_clamp():
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=2, num_elites=1, hidden_size=8, num_layers=1)
    assert torch.isinf(model.output_low).all() and torch.isinf(model.output_high).all()
    next_obs, _ = model.step(torch.full((3, OBS_DIM), 1e6), torch.zeros(3, ACT_DIM), deterministic=True)
    assert (next_obs > 1e5).all()


def test_bfloat16_training_reaches_the_float32_held_out_loss():
    data = linear_data(2000, seed=1)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=5, num_elites=3, hidden_size=64, num_layers=2,
                                      seed=0)
        losses[dtype] = model.fit(*data, max_epochs=40, compute_dtype=dtype)["val_loss"]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["bfloat16"] < 1e-3 and losses["bfloat16"] < 1.5 * losses["float32"], losses


def test_fit_rejects_an_unknown_compute_dtype():
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=2, num_elites=1, hidden_size=8, num_layers=1)
    with pytest.raises(ValueError, match=r"ensemble compute_dtype 'float16' is not one of float32, bfloat16"):
        model.fit(*linear_data(100, seed=0), compute_dtype="float16")

def test_parameters_buffers_and_optimiser_are_made_on_the_device():
    """On the meta device: a parameter or buffer left on the CPU would show here."""
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=3, num_elites=2, hidden_size=8, num_layers=2,
                                  device="meta")
    optimised = [p for group in model.optimizer.param_groups for p in group["params"]]
    assert len(optimised) == len(list(model.parameters())) == 2 * 3 + 2 and len(list(model.buffers())) == 5
    assert {t.device.type for t in (*model.parameters(), *model.buffers(), *optimised)} == {"meta"}
    assert model.device == torch.device("meta")


@pytest.mark.parametrize("device", DEVICES)
def test_fit_and_step_on_the_device_start_from_the_cpus_weights(device):
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=3, num_elites=2, hidden_size=16, num_layers=2,
                                  seed=3, device=device)
    on_cpu = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, num_members=3, num_elites=2, hidden_size=16, num_layers=2, seed=3)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(model.parameters(), on_cpu.parameters(), strict=True))
    model.fit(*linear_data(300, seed=1), max_epochs=2, compute_dtype="bfloat16")
    adam = [t for state in model.optimizer.state.values() for key, t in state.items() if key != "step"]  # steps: CPU
    assert len(adam) == 2 * len(list(model.parameters()))
    assert {t.device for t in (*model.parameters(), *model.buffers(), *adam)} == {torch.device(device)}
    obs, act = torch.zeros(5, OBS_DIM, device=device), torch.zeros(5, ACT_DIM, device=device)
    for deterministic in (True, False):
        outputs = model.step(obs, act, deterministic, torch.Generator(device).manual_seed(0))
        assert {t.device for t in outputs} == {torch.device(device)} and outputs[0].shape == (5, OBS_DIM)
