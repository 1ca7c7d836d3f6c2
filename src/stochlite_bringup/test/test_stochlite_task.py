"""StochLite task: reward terms in known states, the termination function against the env, registration."""
import numpy as np
import pybullet
import pytest
import torch

from stochlite_bringup.task_names import robot_namespace
from stochlite_bringup.tasks import make_task
from stochlite_bringup.tasks.dimensions import task_dimensions
from stochlite_bringup.tasks.stochlite_env import OBS_DIM, StochliteEnv, stochlite_termination_fn
from stochlite_bringup.tasks.stochlite_reward import (
    energy_penalty,
    forward_progress_reward,
    stochlite_reward,
    upright_reward,
)


def test_reward_terms_known_values():
    assert forward_progress_reward((0.1, 0.3, 0.0), (1.0, 0.0, 0.0)) == pytest.approx(1.0)
    assert forward_progress_reward((2.0, 0.0, 0.0), (1.0, 0.0, 0.0)) == pytest.approx(5.0)  # capped at 0.5 m/s
    assert forward_progress_reward((-0.2, 0.0, 0.0), (1.0, 0.0, 0.0)) == pytest.approx(-2.0)
    assert upright_reward((0, 0, 1), (0, 0, 1)) == pytest.approx(0.5)
    assert upright_reward((0, np.sin(np.pi / 3), np.cos(np.pi / 3)), (0, 0, 1)) == pytest.approx(0.25)
    assert upright_reward((0, 0, -1), (0, 0, 1)) == pytest.approx(-0.5)
    assert energy_penalty(20.0) == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="power_w"):
        energy_penalty(-1.0)
    pitch = np.radians(10.0)  # a 10 degree slope: its x axis points uphill
    ground = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]]).T
    reward = stochlite_reward(0.1 * ground[:, 0], ground[:, 2], 100.0, ground)
    assert (reward.forward, reward.upright, reward.energy) == pytest.approx((1.0, 0.5, -0.1))
    assert reward.total == pytest.approx(1.4)


def test_termination_fn_agrees_with_env():
    env = StochliteEnv(episode_steps=300, seed=0)
    try:
        obs, _ = env.reset()
        assert obs.shape == (OBS_DIM,) and obs[11] == pytest.approx(np.radians(-5.0), abs=1e-6)
        upright = torch.as_tensor(obs)
        assert not bool(stochlite_termination_fn(upright, None, upright))
        standing = np.zeros(13)
        standing[12] = -1.0  # step length 0: trot on the spot
        _, _, terminated, _, _ = env.step(standing)
        assert not terminated
        flat_obs = env.reset(options={"slope_roll_deg": 0.0, "slope_pitch_deg": 0.0})[0]
        assert flat_obs[11] == 0.0
        # tip the base over by 90 degrees: the env must see it fallen after the next step
        pybullet.resetBasePositionAndOrientation(env._sim._body, (0, 0, 0.3),
                                                 pybullet.getQuaternionFromEuler((np.pi / 2, 0, 0)),
                                                 physicsClientId=env._sim._client)
        fallen_obs, _, terminated, _, _ = env.step(standing)
        assert terminated
        assert bool(stochlite_termination_fn(torch.as_tensor(flat_obs), None, torch.as_tensor(fallen_obs)))
    finally:
        env.close()
    batch = torch.zeros(3, OBS_DIM)
    batch[:, 9] = 0.26  # standing height
    batch[1, 1] = 0.7  # pitched 0.7 rad off a flat ground
    batch[2, 9] = 0.1  # lying
    assert stochlite_termination_fn(batch, None, batch).tolist() == [False, True, True]


def test_registered_and_dimensions():
    assert robot_namespace("stochlite") == "stochlite"
    dims = task_dimensions("stochlite")
    assert (dims.obs_dim, dims.act_dim) == (14, 13)
    np.testing.assert_allclose(dims.command(np.zeros(13)), 0.0)
    env, spec = make_task("stochlite", seed=1, episode_steps=3)
    try:
        assert (spec.obs_dim, spec.act_dim, spec.episode_steps) == (14, 13, 3)
        env.reset()
        truncated = [env.step(np.zeros(13, dtype=np.float32))[3] for _ in range(3)]
        assert truncated == [False, False, True]
        with pytest.raises(ValueError, match="13 finite"):
            env.step(np.zeros(12))
    finally:
        env.close()
