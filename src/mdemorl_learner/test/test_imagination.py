"""Model-generated experience: MBPO's branched rollout and D_MPC filling for every model-based algorithm."""
import numpy as np
import pytest
import torch

from mdemorl_learner import imagination as imagination_module
from mdemorl_learner.config import TrainConfig
from mdemorl_learner.imagination import Imagination, policy_rollout
from mdemorl_planner.replay_buffer import ReplayBuffer
from mdemorl_learner.sac import SAC, SACConfig


class DriftModel:
    """Exact dynamics x' = x + 1 with reward x[0], standing in for a learned ensemble."""

    def step(self, obs, act, deterministic=False, generator=None):
        return obs + 1.0, obs[..., 0]


def resolved_config(**settings) -> TrainConfig:
    """A TrainConfig as the Trainer hands it on: device and dtypes resolved (here explicitly, CPU float32)."""
    return TrainConfig(**{"device": "cpu", "sac_dtype": "float32", "model_dtype": "float32",
                          "planner_dtype": "float32", **settings})


def test_policy_rollout_stops_each_branch_at_its_termination():
    agent = SAC(2, 1, SACConfig(hidden_size=16), seed=0)
    x0 = np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    terminate_at_3 = lambda obs, act, nxt: nxt[..., 0] >= 3.0  # noqa: E731
    data = policy_rollout(DriftModel(), agent, x0, 4, terminate_at_3)
    # branch 0: 0->1->2->3 (3 steps, last terminal); branch 1: 2->3 (1 step, terminal)
    assert data["obs"][:, 0].tolist() == [0.0, 2.0, 1.0, 2.0]
    assert data["terminated"].tolist() == [False, True, False, True]
    assert data["reward"].tolist() == [0.0, 2.0, 1.0, 2.0]
    assert np.all(np.abs(data["act"]) <= 1.0)


@pytest.mark.parametrize("algo, per_start", [("mbpo", 1), ("mopac", 2), ("mdemorl", 2)])
def test_generate_fills_d_mpc_with_finite_model_transitions(algo, per_start):
    torch.manual_seed(0)
    cfg = resolved_config(algo=algo, ensemble_size=3, num_elites=2, model_hidden=16, model_layers=2,
                      model_max_epochs=2, rollout_batch_start=10, rollout_batch_max=10, horizon_start=2,
                      horizon_end=2, num_samples=8, steps_per_epoch=100, model_train_freq=100)
    agent = SAC(3, 2, SACConfig(hidden_size=16), seed=0)
    imagination = Imagination(cfg, 3, 2, agent, termination_fn=None)
    rng = np.random.default_rng(0)
    d_env = ReplayBuffer(3, 2, 200)
    obs = rng.normal(size=(200, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    d_env.add_batch(obs, act, obs[:, 0], obs + 0.1 * np.pad(act, ((0, 0), (0, 1))), np.zeros(200, bool))
    assert imagination.train_model(d_env) > 0.0
    added = imagination.generate(d_env, epoch=1)
    assert added == 10 * per_start == len(imagination.d_mpc) == imagination.total_imagined
    data = imagination.d_mpc.all()
    assert np.isfinite(data["obs"]).all() and np.isfinite(data["reward"]).all()


def test_model_dtype_reaches_the_ensemble_fit():
    rng = np.random.default_rng(0)
    d_env = ReplayBuffer(3, 2, 200)
    obs = rng.normal(size=(200, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    d_env.add_batch(obs, act, obs[:, 0], obs + 0.1 * np.pad(act, ((0, 0), (0, 1))), np.zeros(200, bool))
    weights = {}
    for dtype in ("float32", "bfloat16", "float32"):
        cfg = resolved_config(ensemble_size=3, num_elites=2, model_hidden=16, model_layers=2, model_max_epochs=2,
                          model_dtype=dtype)
        imagination = Imagination(cfg, 3, 2, SAC(3, 2, SACConfig(hidden_size=16), seed=0), termination_fn=None)
        imagination.train_model(d_env)
        weights.setdefault(dtype, []).append(imagination.model.weights[0].detach().clone())
    assert torch.equal(*weights["float32"])  # the same seed and data fit the same weights...
    assert not torch.equal(weights["float32"][0], weights["bfloat16"][0])  # ...unless the dtype differs


@pytest.mark.parametrize("algo, setting, given, from_task", [
    ("mbpo", "task", True, True), ("mdemorl", "task", True, True), ("mdemorl", "auto", True, True),
    ("mdemorl", "auto", False, False), ("mdemorl", "model", True, False)])
def test_imagined_rewards_come_from_the_task_when_asked(algo, setting, given, from_task):
    torch.manual_seed(0)
    cfg = resolved_config(algo=algo, ensemble_size=3, num_elites=2, model_hidden=16, model_layers=2,
                      model_max_epochs=2, rollout_batch_start=10, rollout_batch_max=10, horizon_start=3,
                      horizon_end=3, num_samples=8, imagined_reward=setting)
    agent = SAC(3, 2, SACConfig(hidden_size=16), seed=0)
    reward_fn = lambda obs, act, nxt: nxt.square().sum(-1) - act[..., 0]  # noqa: E731
    if setting == "task":
        with pytest.raises(ValueError, match="--imagined-reward is 'task' but the reward of leg cannot be computed from its observation; "
                                             "use 'model'"):
            Imagination(cfg, 3, 2, agent, termination_fn=None)
    imagination = Imagination(cfg, 3, 2, agent, termination_fn=None, reward_fn=reward_fn if given else None)
    rng = np.random.default_rng(0)
    d_env = ReplayBuffer(3, 2, 200)
    obs = rng.normal(size=(200, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    d_env.add_batch(obs, act, np.full(200, 50.0, np.float32), obs + 0.1, np.zeros(200, bool))
    imagination.train_model(d_env)
    imagination.generate(d_env, epoch=1)
    data = imagination.d_mpc.all()
    expected = reward_fn(*(torch.as_tensor(data[k]) for k in ("obs", "act", "next_obs"))).numpy()
    assert np.allclose(data["reward"], expected, rtol=1e-5, atol=1e-5) == from_task


def test_the_ensemble_and_the_planner_get_the_configs_device(monkeypatch):
    """cfg.device reaches the ensemble (built on the meta device here: nothing left on the CPU) and the planner."""
    cfg = resolved_config(ensemble_size=3, num_elites=2, model_hidden=16, model_layers=2, planner_dtype="float32",
                      device="meta")
    imagination = Imagination(cfg, 3, 2, SAC(3, 2, SACConfig(hidden_size=16), seed=0), termination_fn=None)
    assert {t.device.type for t in (*imagination.model.parameters(), *imagination.model.buffers())} == {"meta"}
    monkeypatch.setattr(imagination_module, "DMDMPCPlanner", lambda config, *args, **kwargs: config)
    assert imagination.planner(epoch=1).device == "meta"  # the PlannerConfig it builds (no generator on meta)
