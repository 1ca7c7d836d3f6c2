"""LegTask (joint state + time -> observation, reward) against LegTrackingEnv on the same states."""

import numpy as np
import pytest

from stochlite_bringup.tasks.leg_env import TIMESTEP_S, LegTrackingEnv
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM, LegTask


def test_observation_and_reward_equal_the_env_bit_for_bit():
    env = LegTrackingEnv(episode_steps=300, seed=3)
    task = LegTask(episode_steps=300)
    rng = np.random.default_rng(0)
    try:
        obs, _ = env.reset()
        q, qdot = env.joint_state
        assert np.array_equal(task.sample(q, qdot, 0.0).obs, obs)
        assert obs.shape == (OBS_DIM,) and env.action_space.shape == (ACT_DIM,)
        truncated = False
        while not truncated:
            obs, reward, _, truncated, info = env.step(rng.uniform(-1, 1, ACT_DIM).astype(np.float32))
            assert task.advance() == truncated
            q, qdot = env.joint_state
            sample = task.sample(q, qdot, task.steps * TIMESTEP_S)
            assert np.array_equal(sample.obs, obs)
            assert sample.reward == reward
            assert sample.phase == info["phase"]
            assert np.array_equal(sample.foot_position, info["foot_position"])
            assert np.array_equal(sample.desired_foot_position, info["desired_foot_position"])
        assert task.steps == 300
        task.reset()
        assert task.steps == 0 and not task.advance()
    finally:
        env.close()


@pytest.mark.parametrize("kwargs", [{"episode_steps": 0}, {"frequency_hz": 0.0}])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LegTask(**kwargs)
