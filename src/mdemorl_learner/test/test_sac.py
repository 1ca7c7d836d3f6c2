import copy

import numpy as np
import pytest
import torch

from mdemorl_planner.replay_buffer import ReplayBuffer
from mdemorl_learner.sac import SAC, SACConfig

torch.set_num_threads(1)

OBS, ACT = 5, 3
SMALL = SACConfig(hidden_size=32, batch_size=16)
DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def random_batch(rng: np.random.Generator, n: int = 16) -> dict:
    return {
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "act": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "terminated": (rng.random(n) < 0.3).astype(np.float32),
    }


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def trained_agent_and_copy(config: SACConfig, rng: np.random.Generator) -> tuple[SAC, SAC, dict, dict]:
    """An agent after 3 updates, an exact copy (RNG included) to compute references with, and a 64-row
    batch as arrays and as tensors."""
    agent = SAC(OBS, ACT, config, seed=0)
    for _ in range(3):
        agent.update(random_batch(rng))
    ref = SAC(OBS, ACT, agent.config, seed=1)
    ref.load_state_dict(agent.state_dict())
    batch = random_batch(rng, n=64)
    return agent, ref, batch, {k: torch.from_numpy(v) for k, v in batch.items()}


def test_critic_loss_matches_soft_bellman_reference():
    """q_loss = sum over heads of 0.5 mean (Q_i(s, a) - y)^2 with
    y = r + gamma (1 - terminated) (min_i Qtarg_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s')."""
    agent, ref, batch, b = trained_agent_and_copy(SACConfig(hidden_size=32, gamma=0.9, init_alpha=0.7),
                                                  np.random.default_rng(0))
    assert 0 < b["terminated"].sum() < 64
    with torch.no_grad():
        next_act, next_logp = ref.actor(b["next_obs"], generator=ref.generator)
        tq1, tq2 = ref.critic_target(b["next_obs"], next_act)
        alpha = ref.log_alpha.exp()
        soft_next = torch.minimum(tq1, tq2) - alpha * next_logp
        y = b["reward"] + 0.9 * (1 - b["terminated"]) * soft_next
    q1, q2 = ref.critic(b["obs"], b["act"])
    expected = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
    expected.backward()
    stats = agent.update(batch)
    assert stats["q_loss"] == pytest.approx(expected.item(), rel=1e-5)
    # the critic's gradients come from the critic loss only (the actor step leaves them alone)
    for p_ref, p in zip(ref.critic.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6)
    assert stats["q_mean"] == pytest.approx(((q1 + q2) / 2).mean().item(), rel=1e-5, abs=1e-6)
    assert stats["alpha"] == pytest.approx(alpha.item(), rel=1e-6)


def test_actor_and_temperature_gradients_use_the_critic_before_its_step():
    """pi_loss = mean(alpha log pi(a|s) - min_i Q_i(s, a)), a ~ pi(s), with Q the critic as it was before
    this update's critic step (one backward serves all three losses)."""
    agent, ref, batch, b = trained_agent_and_copy(SACConfig(hidden_size=32, init_alpha=0.4), np.random.default_rng(1))
    with torch.no_grad():
        ref.actor(b["next_obs"], generator=ref.generator)  # the target's draw comes first
    pi_act, logp = ref.actor(b["obs"], generator=ref.generator)
    q1, q2 = ref.critic(b["obs"], pi_act)
    alpha = ref.log_alpha.exp().detach()
    pi_loss = (alpha * logp - torch.minimum(q1, q2)).mean()
    alpha_loss = -ref.log_alpha * (logp.detach().mean() + ref.target_entropy)
    (pi_loss + alpha_loss).backward()
    critic_before = params(agent.critic)
    stats = agent.update(batch)
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, params(agent.critic)))
    assert stats["pi_loss"] == pytest.approx(pi_loss.item(), rel=1e-5)
    for p_ref, p in zip(ref.actor.parameters(), agent.actor.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(agent.log_alpha.grad, ref.log_alpha.grad)


@pytest.mark.parametrize("tau", [0.005, 0.3])
def test_polyak_target_update(tau):
    agent = SAC(OBS, ACT, SACConfig(hidden_size=32, tau=tau), seed=0)
    old_target = [p.double() for p in params(agent.critic_target)]
    agent.update(random_batch(np.random.default_rng(0)))
    online = [p.double() for p in params(agent.critic)]
    for t, o, new in zip(old_target, online, agent.critic_target.parameters()):
        assert not torch.equal(new.double(), t)
        torch.testing.assert_close(new.double(), (1 - tau) * t + tau * o, rtol=0, atol=1e-7)


@pytest.mark.parametrize("offset, direction", [(-0.5, -1.0), (0.5, 1.0)])
def test_entropy_tuning_moves_alpha_towards_target(offset, direction):
    """Entropy above the target lowers alpha, below it raises alpha."""
    rng = np.random.default_rng(0)
    batches = [random_batch(rng) for _ in range(5)]
    initial_entropy = SAC(OBS, ACT, SMALL, seed=0).update(batches[0])["entropy"]
    config = SACConfig(hidden_size=32, init_alpha=0.5, target_entropy=initial_entropy + offset)
    agent = SAC(OBS, ACT, config, seed=0)
    stats = [agent.update(b) for b in batches]
    assert stats[0]["alpha"] == pytest.approx(0.5)
    assert all(direction * (s["entropy"] - agent.target_entropy) < 0 for s in stats)
    alphas = [s["alpha"] for s in stats] + [agent.alpha]
    assert all(direction * (b - a) > 0 for a, b in zip(alphas, alphas[1:]))


def test_default_target_entropy_is_minus_act_dim():
    assert SAC(OBS, ACT, SMALL).target_entropy == -3.0
    assert SAC(OBS, ACT, SACConfig(hidden_size=8, target_entropy=-1.5)).target_entropy == -1.5


def test_actor_keeps_more_entropy_at_higher_fixed_alpha():
    """Quadratic bandit: the max-entropy policy's spread grows with the temperature."""
    rng = np.random.default_rng(0)
    n = 2000
    s = rng.uniform(-1, 1, (n, 2))
    a = rng.uniform(-1, 1, (n, 1))
    buf = ReplayBuffer(2, 1, n)
    buf.add_batch(s, a, -((a[:, 0] - 0.5 * s[:, 0]) ** 2), s, np.ones(n))
    entropy = {}
    for alpha in (0.3, 0.01):
        config = SACConfig(
            hidden_size=32, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=0.0, init_alpha=alpha
        )
        agent = SAC(2, 1, config, seed=0)
        stats = [agent.update(buf.sample(64, rng)) for _ in range(400)]
        assert agent.alpha == pytest.approx(alpha)
        entropy[alpha] = np.mean([st["entropy"] for st in stats[-50:]])
    assert entropy[0.3] > entropy[0.01] + 1.0


def test_update_returns_stats_and_counts_steps():
    agent = SAC(OBS, ACT, SMALL, seed=0)
    assert agent.updates == 0
    stats = agent.update(random_batch(np.random.default_rng(0)))
    assert set(stats) == {"q_loss", "pi_loss", "alpha", "entropy", "q_mean"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in stats.values())
    assert agent.updates == 1


def test_update_rejects_mismatched_batch():
    agent = SAC(OBS, ACT, SMALL, seed=0)
    batch = random_batch(np.random.default_rng(0))
    batch["reward"] = batch["reward"][:, None]
    with pytest.raises(ValueError, match="batch shapes"):
        agent.update(batch)
    assert agent.updates == 0


def test_act_shapes_and_bounds():
    agent = SAC(OBS, ACT, SMALL, seed=0)
    single = agent.act(np.zeros(OBS))
    many = agent.act(np.random.default_rng(0).normal(size=(7, OBS)) * 100)
    assert single.shape == (ACT,) and many.shape == (7, ACT)
    assert single.dtype == np.float32 and np.abs(many).max() <= 1.0
    det = agent.act(np.ones(OBS), deterministic=True)
    np.testing.assert_array_equal(det, agent.act(np.ones(OBS), deterministic=True))
    torch.testing.assert_close(
        torch.from_numpy(det), agent.policy_mean(torch.ones(OBS)), rtol=0, atol=0
    )


def test_value_is_min_twin_q_at_mean_action():
    agent = SAC(OBS, ACT, SMALL, seed=0)
    obs = torch.randn(4, 6, OBS)
    v = agent.value(obs)
    assert v.shape == (4, 6) and not v.requires_grad
    flat = obs.reshape(-1, OBS)
    q1, q2 = agent.critic(flat, agent.policy_mean(flat))
    torch.testing.assert_close(v.reshape(-1), torch.minimum(q1, q2), rtol=0, atol=0)


def test_same_seed_is_deterministic_and_seed_matters():
    rng = np.random.default_rng(0)
    batches = [random_batch(rng) for _ in range(10)]
    runs = []
    for seed in (3, 3, 4):
        agent = SAC(OBS, ACT, SMALL, seed=seed)
        runs.append([agent.update(b) for b in batches] + [agent.act(np.ones(OBS)).tolist()])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_state_dict_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    agent = SAC(OBS, ACT, SACConfig(hidden_size=32, tau=0.1), seed=0)
    for _ in range(5):
        agent.update(random_batch(rng))
    path = tmp_path / "sac.pt"
    agent.save(path)
    restored = [SAC.load(path), SAC(OBS, ACT, SACConfig(hidden_size=32), seed=99)]
    restored[1].load_state_dict(agent.state_dict())

    obs = rng.normal(size=(8, OBS)).astype(np.float32)
    batch = random_batch(rng)
    expected_det = agent.act(obs, deterministic=True)
    expected_stoch = agent.act(obs)
    expected_stats = agent.update(batch)
    for other in restored:
        assert other.updates == 5 and other.config == agent.config
        np.testing.assert_array_equal(other.act(obs, deterministic=True), expected_det)
        np.testing.assert_array_equal(other.act(obs), expected_stoch)  # RNG state restored
        assert other.update(batch) == expected_stats
        assert other.updates == 6
        for name in ("actor", "critic", "critic_target"):
            for a, b in zip(getattr(agent, name).parameters(), getattr(other, name).parameters()):
                assert torch.equal(a, b)
        assert torch.equal(other.log_alpha, agent.log_alpha)


def tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in tensors(v)]
    return []


def test_resumes_a_checkpoint_with_the_former_two_optimizers():
    """Checkpoints written before 2026-12-04 hold a critic Adam (critic params) and an actor Adam (actor
    params, then log_alpha); resuming one continues exactly as the single-Adam state does."""
    rng = np.random.default_rng(0)
    agent = SAC(OBS, ACT, SMALL, seed=0)
    for _ in range(4):
        agent.update(random_batch(rng))
    state = agent.state_dict()
    adam = state.pop("optimizer")
    n_critic = len(list(agent.critic.parameters()))
    critic_groups, actor_group, alpha_group = adam["param_groups"][0], *adam["param_groups"][1:]
    state["critic_opt"] = {"state": {i: adam["state"][i] for i in critic_groups["params"]},
                           "param_groups": [critic_groups]}
    state["actor_opt"] = {"state": {i - n_critic: adam["state"][i] for i in actor_group["params"] + alpha_group["params"]},
                          "param_groups": [{**g, "params": [i - n_critic for i in g["params"]]}
                                           for g in (actor_group, alpha_group)]}
    old = SAC(OBS, ACT, SMALL, seed=5)
    old.load_state_dict(state)
    batch = random_batch(rng)
    assert old.update(batch) == agent.update(batch)
    for a, b in zip(agent.actor.parameters(), old.actor.parameters()):
        assert torch.equal(a, b)


def test_state_dict_is_a_snapshot():
    """Neither the source nor an agent loaded from it may alias the returned tensors."""
    rng = np.random.default_rng(0)
    agent = SAC(OBS, ACT, SMALL, seed=0)
    agent.update(random_batch(rng))
    state = agent.state_dict()
    reference = copy.deepcopy(state)
    other = SAC(OBS, ACT, SMALL, seed=1)
    other.load_state_dict(state)
    batch = random_batch(rng)
    agent.update(batch)
    other.update(batch)
    assert len(tensors(state)) > 20
    assert all(torch.equal(a, b) for a, b in zip(tensors(state), tensors(reference)))


def test_load_state_dict_rejects_other_dimensions():
    state = SAC(OBS, ACT, SMALL).state_dict()
    with pytest.raises(ValueError, match="obs_dim/act_dim"):
        SAC(OBS + 1, ACT, SMALL).load_state_dict(state)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_learns_contextual_bandit(compute_dtype):
    """One-step problem: reward -(a - f(s))^2, terminated; optimum a* = f(s); also with bfloat16 matmuls."""

    def optimum(s: np.ndarray) -> np.ndarray:
        return 0.6 * s[:, 0] - 0.3 * s[:, 1]

    rng = np.random.default_rng(0)
    n = 4000
    s = rng.uniform(-1, 1, (n, 2))
    a = rng.uniform(-1, 1, (n, 1))
    buf = ReplayBuffer(2, 1, n)
    buf.add_batch(s, a, -((a[:, 0] - optimum(s)) ** 2), s, np.ones(n))
    config = SACConfig(
        hidden_size=64,
        actor_lr=1e-3,
        critic_lr=1e-3,
        alpha_lr=1e-3,
        batch_size=128,
        init_alpha=0.02,
        compute_dtype=compute_dtype,
    )
    agent = SAC(2, 1, config, seed=0)
    test_s = rng.uniform(-1, 1, (200, 2)).astype(np.float32)

    def error() -> float:
        return float(np.abs(agent.act(test_s, deterministic=True)[:, 0] - optimum(test_s)).max())

    assert error() > 0.3
    for _ in range(1500):
        stats = agent.update(buf.sample(config.batch_size, rng))
    assert error() < 0.1
    assert stats["q_loss"] < 1e-2


def test_bfloat16_updates_keep_float32_weights_q_values_and_losses_near_float32():
    rng = np.random.default_rng(0)
    exact = SAC(OBS, ACT, SMALL, seed=0)
    mixed = SAC(OBS, ACT, SACConfig(hidden_size=32, batch_size=16, compute_dtype="bfloat16"), seed=0)
    batch = random_batch(rng)
    first = exact.update(batch), mixed.update(batch)
    assert first[1]["q_loss"] == pytest.approx(first[0]["q_loss"], rel=0.05)
    assert all(p.dtype == torch.float32 for p in (*mixed.critic.parameters(), *mixed.actor.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = mixed.critic.q_values(torch.from_numpy(batch["obs"]), torch.from_numpy(batch["act"]))
    assert q.dtype == torch.float32  # the output layer stays float32 under autocast
    with pytest.raises(ValueError, match="compute_dtype 'float16'"):
        SAC(OBS, ACT, SACConfig(compute_dtype="float16"))

@pytest.mark.parametrize("device", DEVICES)
def test_networks_optimiser_state_and_noise_live_on_the_configured_device(device, tmp_path):
    """Every parameter, gradient, Adam moment and step and the generator are on config.device; act and update
    take numpy and act returns it; a checkpoint holds CPU tensors and loads on the CPU equal to the agent."""
    rng = np.random.default_rng(0)
    agent = SAC(OBS, ACT, SACConfig(hidden_size=32, batch_size=16, compute_dtype="bfloat16", device=device), seed=0)
    agent.update(random_batch(rng))
    assert isinstance(agent.act(np.zeros(OBS, np.float32)), np.ndarray)
    trained = [*agent.actor.parameters(), *agent.critic.parameters(), agent.log_alpha]
    on_device = [*trained, *(p.grad for p in trained), *agent.critic_target.parameters(),
                 *tensors(agent.optimizer.state_dict())]
    assert len(on_device) == 5 * len(trained) + len(list(agent.critic_target.parameters()))  # Adam: 3 each
    assert {t.device for t in on_device} == {torch.device(device)} == {agent.generator.device}

    path = tmp_path / "sac.pt"
    agent.save(path)
    state = torch.load(path, weights_only=True)  # no map_location: a host without the device reads it too
    assert {t.device for t in tensors(state)} == {torch.device("cpu")}
    restored = SAC.load(path, device="cpu")
    assert restored.config.device == "cpu" and restored.updates == 1
    for key in ("actor", "critic", "critic_target", "log_alpha", "optimizer"):
        for a, b in zip(tensors(restored.state_dict()[key]), tensors(state[key]), strict=True):
            assert torch.equal(a, b), key


def test_a_gpu_runs_checkpoint_resumes_on_the_cpu_reproducibly(tmp_path, monkeypatch):
    """A CUDA run's checkpoint: tensors saved from cuda:0, the config's device "cuda" and a CUDA generator's state
    (16 bytes, not a CPU generator's). It loads onto the CPU with the same weights and moments, and the noise goes
    on from a generator seeded by the saved state, the same at every load."""
    rng = np.random.default_rng(0)
    agent = SAC(OBS, ACT, SMALL, seed=0)
    for _ in range(3):
        agent.update(random_batch(rng))
    state = agent.state_dict()
    state["config"]["device"] = "cuda"
    state["generator"], state["generator_device"] = torch.arange(16, dtype=torch.uint8), "cuda"
    path = tmp_path / "gpu.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, path)
    restored = [SAC.load(path), SAC(OBS, ACT, SMALL, seed=7)]
    restored[1].load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    obs, batch = rng.normal(size=(4, OBS)).astype(np.float32), random_batch(rng)
    for other in restored:
        assert other.config.device == "cpu" and other.updates == 3
        assert {p.device for p in other.actor.parameters()} == {torch.device("cpu")}
        np.testing.assert_array_equal(other.act(obs, deterministic=True), agent.act(obs, deterministic=True))
        for a, b in zip(tensors(other.optimizer.state_dict()), tensors(agent.optimizer.state_dict()), strict=True):
            assert torch.equal(a, b)
    np.testing.assert_array_equal(restored[0].act(obs), restored[1].act(obs))
    assert restored[0].update(batch) == restored[1].update(batch)
