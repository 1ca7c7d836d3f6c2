"""Snapshot payloads: round trips through bytes, and rejections that say what is wrong."""
import pytest
import torch

from mdemorl_planner.ensemble import ProbabilisticEnsemble
from mdemorl_planner.messages import bytes_to_state_dict, state_dict_to_bytes
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ
from mdemorl_planner.snapshots import dynamics_payload, load_dynamics, load_policy, policy_payload, to_cpu

DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _policy_state(obs_dim=3, act_dim=2, hidden=8, layers=1):
    actor, critic = SquashedGaussianActor(obs_dim, act_dim, hidden, layers), TwinQ(obs_dim, act_dim, hidden, layers)
    return actor, critic, bytes_to_state_dict(state_dict_to_bytes(
        policy_payload(actor, critic, obs_dim, act_dim, hidden, layers)))


def test_policy_round_trip_gives_mean_action_and_min_q_value():
    actor, critic, state = _policy_state()
    policy = load_policy(state)
    obs = torch.randn(4, 5, 3)
    torch.testing.assert_close(policy.policy_mean(obs), actor.mean_action(obs))
    flat = obs.reshape(-1, 3)
    expected = critic.q_values(flat, actor.mean_action(flat)).amin(0).reshape(4, 5)
    torch.testing.assert_close(policy.value(obs), expected)


def test_dynamics_round_trip_predicts_like_the_original():
    model = ProbabilisticEnsemble(3, 2, num_members=3, num_elites=2, hidden_size=8, num_layers=2, seed=1)
    model.elite_indices.copy_(torch.tensor([2, 0]))
    state = bytes_to_state_dict(state_dict_to_bytes(dynamics_payload(model, 8, 2, val_loss=0.5)))
    assert state["val_loss"] == 0.5
    loaded = load_dynamics(state)
    obs, act = torch.randn(6, 3), torch.rand(6, 2)
    assert loaded.elites == [2, 0]
    for a, b in zip(loaded.step(obs, act, deterministic=True), model.step(obs, act, deterministic=True)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update(hidden_size=9), r"'actor' does not match the declared sizes"),
    (lambda s: s.pop("critic"), r"'critic' must be a state dict"),
    (lambda s: s.update(obs_dim=0), r"'obs_dim' must be an integer >= 1"),
    (lambda s: s["actor"]["net.0.weight"].fill_(float("nan")), r"'actor.net.0.weight' holds non-finite"),
])
def test_bad_policy_payloads_are_rejected_naming_the_problem(change, match):
    state = _policy_state()[2]
    change(state)
    with pytest.raises(ValueError, match=match):
        load_policy(state)


def test_dynamics_with_more_elites_than_members_is_rejected():
    model = ProbabilisticEnsemble(3, 2, num_members=2, num_elites=2, hidden_size=8, num_layers=1)
    state = dynamics_payload(model, 8, 1, 0.0)
    state["num_elites"] = 3
    with pytest.raises(ValueError, match="num_elites 3 exceeds num_members 2"):
        load_dynamics(state)


def test_fitted_output_bounds_travel_with_the_dynamics_and_nan_bounds_are_rejected():
    model = ProbabilisticEnsemble(3, 2, num_members=2, num_elites=1, hidden_size=8, num_layers=1, seed=0)
    rng = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, 3, generator=rng).numpy(), torch.rand(64, 2, generator=rng).numpy()
    model.fit(obs, act, obs[:, 0], obs + 0.1, max_epochs=1)
    state = bytes_to_state_dict(state_dict_to_bytes(dynamics_payload(model, 8, 1, val_loss=0.1)))
    loaded = load_dynamics(state)
    far = torch.full((1, 3), 1e3)
    torch.testing.assert_close(loaded.step(far, torch.zeros(1, 2), deterministic=True)[0], model.output_high[:3][None])
    state["model"]["output_low"][0] = float("nan")
    with pytest.raises(ValueError, match=r"'model.output_low' holds non-finite"):
        load_dynamics(state)

@pytest.mark.parametrize("device", DEVICES)
def test_to_cpu_moves_every_nested_tensor_and_keeps_the_containers(device):
    """CPU tensors come back as themselves (no copy); containers keep their type and a state dict's _metadata."""
    linear = torch.nn.Linear(3, 2).to(device)
    tree = {"model": linear.state_dict(), "steps": [torch.ones(2, device=device), (torch.zeros(1, device=device), 4)],
            "val_loss": 0.5}
    moved = to_cpu(tree)
    leaves = [*moved["model"].values(), moved["steps"][0], moved["steps"][1][0]]
    assert {t.device for t in leaves} == {torch.device("cpu")}
    assert type(moved["model"]) is type(tree["model"]) and moved["model"]._metadata == tree["model"]._metadata
    assert type(moved["steps"][1]) is tuple and moved["steps"][1][1] == 4 and moved["val_loss"] == 0.5
    originals = [*tree["model"].values(), tree["steps"][0], tree["steps"][1][0]]
    assert all(torch.equal(a, b.cpu()) for a, b in zip(leaves, originals, strict=True))
    assert all((a is b) == (device == "cpu") for a, b in zip(leaves, originals))


@pytest.mark.parametrize("device", DEVICES)
def test_snapshots_load_onto_the_device_equal_to_the_modules_sent(device):
    actor, critic, state = _policy_state(layers=2)
    policy = load_policy(state, device=device)
    for sent, loaded in ((actor, policy.actor), (critic, policy.critic)):
        for (name, a), (_, b) in zip(sent.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert b.device == torch.device(device) and torch.equal(a, b.cpu()), name
    model = ProbabilisticEnsemble(3, 2, num_members=3, num_elites=2, hidden_size=8, num_layers=2, seed=1)
    model.elite_indices.copy_(torch.tensor([2, 0]))
    loaded = load_dynamics(bytes_to_state_dict(state_dict_to_bytes(dynamics_payload(model, 8, 2, 0.5))), device)
    assert loaded.device == torch.device(device) and loaded.elites == [2, 0]
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert b.device == torch.device(device) and torch.equal(a, b.cpu()), name
