"""Tests of the MuJoCo tasks: registry dimensions and termination functions vs the real envs."""

import numpy as np
import pytest
import torch

from stochlite_bringup.task_names import robot_namespace
from stochlite_bringup.tasks import make_task
from stochlite_bringup.tasks.dimensions import TaskDimensions, task_dimensions
from stochlite_bringup.tasks.gym_tasks import (
    ant_termination_fn,
    hopper_termination_fn,
    make_env,
    walker2d_termination_fn,
)

# name -> (obs_dim, act_dim, index of the torso height in qpos, perturbed height range)
GYM_TASKS = {
    "HalfCheetah-v5": (17, 6, None, None),
    "Hopper-v5": (11, 3, 1, (0.6, 1.4)),
    "Walker2d-v5": (17, 6, 1, (0.7, 2.1)),
    "Ant-v5": (105, 8, 2, (0.1, 1.1)),
}


@pytest.mark.parametrize("name", GYM_TASKS)
def test_make_task_reports_dimensions_and_episode_length(name):
    env, spec = make_task(name, seed=0)
    obs_dim, act_dim, _, _ = GYM_TASKS[name]
    assert (spec.name, spec.obs_dim, spec.act_dim, spec.episode_steps) == (name, obs_dim, act_dim, 1000)
    assert env.observation_space.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
    assert (spec.termination_fn is None) == (name == "HalfCheetah-v5")
    dims = task_dimensions(name)
    assert (dims.obs_dim, dims.act_dim) == (obs_dim, act_dim)
    np.testing.assert_array_equal(dims.action_low, env.action_space.low)
    np.testing.assert_array_equal(dims.action_high, env.action_space.high)
    env.close()


def test_policy_actions_map_onto_any_action_box_and_robot_names_become_ros_namespaces():
    dims = TaskDimensions(1, 2, np.array([0.0, -0.4]), np.array([2.0, 0.4]))
    np.testing.assert_allclose(dims.command(np.array([-1.0, 1.0])), [0.0, 0.4])
    np.testing.assert_allclose(dims.command(np.array([0.0, 0.5])), [1.0, 0.2])
    assert [robot_namespace(n) for n in ("leg", "HalfCheetah-v5", "Walker2d-v5")] == ["leg", "halfcheetah", "walker2d"]
    with pytest.raises(ValueError, match="unknown robot 'Humanoid-v5'"):
        robot_namespace("Humanoid-v5")


def test_episode_steps_sets_the_time_limit():
    env, spec = make_task("Hopper-v5", seed=0, episode_steps=3)
    assert spec.episode_steps == 3
    env.unwrapped.set_state(env.unwrapped.init_qpos, env.unwrapped.init_qvel)
    assert [env.step(np.zeros(3))[3] for _ in range(3)] == [False, False, True]
    env.close()


def _transitions(name, steps, seed=0):
    """Random-action transitions; every 4th one starts from a perturbed height/angle."""
    env = make_env(name)
    _, _, z_index, (z_low, z_high) = GYM_TASKS[name]
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for step in range(steps):
        if step % 4 == 0:
            model = env.unwrapped
            qpos, qvel = model.data.qpos.copy(), model.data.qvel.copy()
            qpos[z_index] = rng.uniform(z_low, z_high)
            if name != "Ant-v5":
                qpos[2] = rng.uniform(-1.3, 1.3)  # torso angle
            model.set_state(qpos, qvel + rng.normal(0.0, 0.5, qvel.shape))
            obs = model._get_obs()
        action = env.action_space.sample()
        next_obs, _, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, terminated))
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    obs, act, next_obs, terminated = (np.stack(column) for column in zip(*rows))
    return torch.as_tensor(obs), torch.as_tensor(act), torch.as_tensor(next_obs), terminated


@pytest.mark.parametrize("name", ["Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_termination_fn_agrees_with_the_real_env(name):
    _, spec = make_task(name)
    obs, act, next_obs, terminated = _transitions(name, steps=400)
    predicted = spec.termination_fn(obs, act, next_obs)
    assert predicted.dtype == torch.bool and predicted.shape == (400,)
    assert 20 < terminated.sum() < 380  # both outcomes are exercised
    np.testing.assert_array_equal(predicted.numpy(), terminated)


def test_half_cheetah_never_terminates():
    env, spec = make_task("HalfCheetah-v5", seed=0)
    for _ in range(300):
        assert not env.step(env.action_space.sample())[2]
    env.close()
    assert spec.termination_fn is None


@pytest.mark.parametrize(
    ("fn", "n", "healthy_row", "unhealthy_rows"),
    [
        (hopper_termination_fn, 11, {0: 1.2, 1: 0.1}, [{0: 0.7}, {1: 0.2}, {1: -0.25}, {5: 100.0}]),
        (walker2d_termination_fn, 17, {0: 1.2, 1: -0.9}, [{0: 0.8}, {0: 2.0}, {1: 1.0}, {1: -1.5}]),
        (ant_termination_fn, 105, {0: 0.2}, [{0: 0.19}, {0: 1.01}, {0: 0.5, 50: float("nan")}, {3: float("inf")}]),
    ],
)
def test_termination_fn_bounds_and_batch_shape(fn, n, healthy_row, unhealthy_rows):
    rows = torch.zeros(1 + len(unhealthy_rows), n, dtype=torch.float64)
    for i, entries in enumerate([healthy_row, *({**healthy_row, **u} for u in unhealthy_rows)]):
        for index, value in entries.items():
            rows[i, index] = value
    assert fn(rows, None, rows).tolist() == [False] + [True] * len(unhealthy_rows)
    batch = rows[:2].expand(3, 4, 2, n)
    assert fn(batch, None, batch).shape == (3, 4, 2)


def test_make_env_rejects_arguments_that_change_termination_and_unknown_names():
    with pytest.raises(ValueError, match="healthy_z_range"):
        make_env("Hopper-v5", healthy_z_range=(0.5, 2.0))
    with pytest.raises(ValueError, match="'Humanoid-v5'.*HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5"):
        make_task("Humanoid-v5")


def test_every_gym_task_name_has_a_termination_entry():
    from stochlite_bringup.task_names import GYM_TASK_NAMES
    from stochlite_bringup.tasks.gym_tasks import TERMINATION_FNS

    assert tuple(TERMINATION_FNS) == GYM_TASK_NAMES
    assert TERMINATION_FNS["HalfCheetah-v5"] is None
