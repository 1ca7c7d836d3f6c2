"""Tests of the 2R-leg tracking task: URDF, kinematics, foot path, reward (eq. 15), env."""

import numpy as np
import pybullet
import pytest
from gymnasium.utils.env_checker import check_env

from stochlite_bringup.tasks import TASK_NAMES, make_task
from stochlite_bringup.tasks.foot_path import (
    CENTRE_Z_M,
    CLEARANCE_M,
    STEP_LENGTH_M,
    desired_foot_position,
    desired_foot_velocity,
)
from stochlite_bringup.tasks.leg_env import TIMESTEP_S, LegTrackingEnv, leg_urdf_path
from stochlite_bringup.tasks.leg_kinematics import (
    SHANK_LENGTH_M,
    THIGH_LENGTH_M,
    foot_jacobian,
    foot_velocity,
    forward_kinematics,
    inverse_kinematics,
)
from stochlite_bringup.tasks.leg_reward import leg_tracking_reward

GRAVITY = 9.81
THIGH_MASS, SHANK_MASS = 1.547, 0.20  # proxies, as in the URDF


@pytest.fixture
def bullet_leg():
    client = pybullet.connect(pybullet.DIRECT)
    body = pybullet.loadURDF(
        str(leg_urdf_path()), useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=client
    )
    yield client, body
    pybullet.disconnect(physicsClientId=client)


@pytest.fixture
def env():
    leg_env = LegTrackingEnv()
    yield leg_env
    leg_env.close()


def test_urdf_has_two_revolute_joints_with_documented_limits_and_masses(bullet_leg):
    client, body = bullet_leg
    assert pybullet.getNumJoints(body, physicsClientId=client) == 3
    hip, knee, foot = (pybullet.getJointInfo(body, j, physicsClientId=client) for j in range(3))
    assert [hip[1], knee[1], foot[1]] == [b"hip", b"knee", b"foot_fixed"]
    assert [hip[2], knee[2], foot[2]] == [pybullet.JOINT_REVOLUTE] * 2 + [pybullet.JOINT_FIXED]
    assert foot[12] == b"foot"
    assert hip[8:12] == pytest.approx((-1.57, 1.57, 32.0, 28.0))
    assert knee[8:12] == pytest.approx((-2.6, 0.0, 32.0, 28.0))
    assert hip[13] == knee[13] == pytest.approx((0.0, -1.0, 0.0))
    thigh, shank, foot_link = (pybullet.getDynamicsInfo(body, j, physicsClientId=client) for j in range(3))
    assert thigh[0] == pytest.approx(THIGH_MASS)
    assert shank[0] + foot_link[0] == pytest.approx(SHANK_MASS)
    assert thigh[2][0] == pytest.approx(THIGH_MASS * THIGH_LENGTH_M**2 / 12, rel=1e-3)  # rod
    assert shank[2][0] == pytest.approx(SHANK_MASS * SHANK_LENGTH_M**2 / 12, rel=1e-3)
    assert thigh[3] == pytest.approx((0, 0, -THIGH_LENGTH_M / 2))
    assert shank[3] == pytest.approx((0, 0, -SHANK_LENGTH_M / 2))


@pytest.mark.parametrize("q", [(0.0, 0.0), (0.7, -1.6), (-0.4, -0.3), (1.2, -2.4), (-1.5, -0.1)])
def test_forward_kinematics_and_jacobian_match_pybullet(bullet_leg, q):
    client, body = bullet_leg
    qdot = (1.3, -2.1)
    for joint in range(2):
        pybullet.resetJointState(body, joint, q[joint], qdot[joint], physicsClientId=client)
    state = pybullet.getLinkState(
        body, 2, computeLinkVelocity=1, computeForwardKinematics=1, physicsClientId=client
    )
    position, velocity = np.array(state[4]), np.array(state[6])
    assert position[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(forward_kinematics(q), position[[0, 2]], atol=1e-9)
    np.testing.assert_allclose(foot_velocity(q, qdot), velocity[[0, 2]], atol=1e-9)


def test_inverse_kinematics_round_trips_on_the_knee_forward_branch():
    rng = np.random.default_rng(0)
    q = np.column_stack((rng.uniform(-1.0, 1.0, 200), rng.uniform(-2.5, -0.05, 200)))
    q_ik = inverse_kinematics(forward_kinematics(q))
    np.testing.assert_allclose(q_ik, q, atol=1e-9)
    path = desired_foot_position(np.linspace(0, 1, 101))
    np.testing.assert_allclose(forward_kinematics(inverse_kinematics(path)), path, atol=1e-12)
    with pytest.raises(ValueError, match="out of the leg's reach"):
        inverse_kinematics((0.0, -0.6))


def test_jacobian_matches_finite_differences():
    q, eps = np.array([0.5, -1.2]), 1e-6
    numeric = np.column_stack(
        [(forward_kinematics(q + d) - forward_kinematics(q - d)) / (2 * eps) for d in np.eye(2) * eps]
    )
    np.testing.assert_allclose(foot_jacobian(q), numeric, atol=1e-8)


def test_reward_is_one_on_the_trajectory_and_known_off_it():
    p, v = np.array([0.01, -0.38]), np.array([0.4, -0.1])
    assert leg_tracking_reward(p, p, v, v) == 1.0
    assert isinstance(leg_tracking_reward(p, p, v, v), float)
    one_dm, one_m_s = np.array([0.1, 0.0]), np.array([0.0, 1.0])
    assert leg_tracking_reward(p + one_dm, p, v, v) == pytest.approx(0.8 * np.exp(-1) + 0.2)
    assert leg_tracking_reward(p, p, v + one_m_s, v) == pytest.approx(0.8 + 0.2 * np.exp(-1))
    assert leg_tracking_reward(p + 2 * one_dm, p, v + one_m_s, v) == pytest.approx(
        0.8 * np.exp(-4) + 0.2 * np.exp(-1)
    )
    three_cm = np.array([0.0, 0.03])
    assert leg_tracking_reward(p + three_cm, p, v, v) == pytest.approx(0.8 * np.exp(-0.09) + 0.2)


def test_reward_falls_monotonically_with_error_and_is_vectorised():
    errors = np.linspace(0.0, 0.5, 51)
    offsets = np.stack((errors, np.zeros_like(errors)), axis=-1)
    p_d, v_d = np.zeros((51, 2)), np.zeros((51, 2))
    rewards = leg_tracking_reward(p_d + offsets, p_d, v_d + offsets * 10, v_d)
    assert rewards.shape == (51,)
    assert rewards[0] == 1.0 and np.all(np.diff(rewards) < 0) and rewards[-1] < 1e-6
    batch = leg_tracking_reward(np.zeros((4, 3, 2)), np.zeros((4, 3, 2)), np.ones((4, 3, 2)), np.ones(2))
    assert batch.shape == (4, 3) and np.all(batch == 1.0)


def test_desired_path_is_the_documented_half_ellipse():
    half = STEP_LENGTH_M / 2
    np.testing.assert_allclose(desired_foot_position(0.0), (-half, CENTRE_Z_M), atol=1e-15)
    np.testing.assert_allclose(desired_foot_position(0.25), (0.0, CENTRE_Z_M + CLEARANCE_M), atol=1e-15)
    np.testing.assert_allclose(desired_foot_position(0.5), (half, CENTRE_Z_M), atol=1e-15)
    assert (CENTRE_Z_M, CLEARANCE_M, STEP_LENGTH_M) == (-0.40, 0.05, 0.136)
    swing = desired_foot_position(np.linspace(0.0, 0.5, 500, endpoint=False))
    stance = desired_foot_position(np.linspace(0.5, 1.0, 500, endpoint=False))
    np.testing.assert_allclose(stance[:, 1], CENTRE_Z_M)  # flat bottom
    assert np.all(np.diff(stance[:, 0]) < 0) and np.all(np.diff(swing[:, 0]) > 0)
    ellipse = (swing[:, 0] / half) ** 2 + ((swing[:, 1] - CENTRE_Z_M) / CLEARANCE_M) ** 2
    np.testing.assert_allclose(ellipse, 1.0, atol=1e-12)
    assert swing[:, 1].max() == pytest.approx(CENTRE_Z_M + CLEARANCE_M)
    np.testing.assert_allclose(desired_foot_position(1.3), desired_foot_position(0.3))


@pytest.mark.parametrize("frequency_hz", [1.0, 2.5])
def test_desired_velocity_is_the_time_derivative_and_continuous(frequency_hz):
    phase, dt = np.linspace(0.0, 1.0, 2001), 1e-7
    numeric = (desired_foot_position(phase + frequency_hz * dt) - desired_foot_position(phase - frequency_hz * dt)) / (
        2 * dt
    )
    analytic = desired_foot_velocity(phase, frequency_hz)
    np.testing.assert_allclose(analytic, numeric, atol=1e-5)
    for corner in (0.0, 0.5, 1.0):  # where arc and line meet
        np.testing.assert_allclose(desired_foot_velocity(corner, frequency_hz), 0.0, atol=1e-12)
    assert np.abs(np.diff(analytic, axis=0)).max() < 0.02 * frequency_hz  # no jumps
    assert np.linalg.norm(analytic, axis=-1).max() == pytest.approx(2 * np.pi * frequency_hz * STEP_LENGTH_M)


def test_env_passes_gymnasium_check_env(env):
    # render_mode None is the only mode and the env is not registered (no spec), so the
    # render-mode check has nothing to test.
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (10,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (2,) and np.all(env.action_space.high == 1.0)


def test_episode_truncates_after_episode_steps_and_never_terminates(env):
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    for step in range(1, 1001):
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated and truncated == (step == 1000)
    short = LegTrackingEnv(episode_steps=5)
    short.reset(seed=0)
    assert [short.step(np.zeros(2))[3] for _ in range(5)] == [False] * 4 + [True]
    short.close()


def test_reset_is_seeded_starts_on_the_path_and_observation_is_documented(env):
    obs_a, info_a = env.reset(seed=7)
    obs_b, info_b = env.reset(seed=7)
    obs_c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a, obs_c)
    q0 = inverse_kinematics(desired_foot_position(0.0))
    np.testing.assert_allclose(obs_a[:2], q0, atol=env.reset_noise + 1e-6)
    np.testing.assert_array_equal(obs_a[2:4], 0.0)
    np.testing.assert_allclose(obs_a[4:6], (-0.68, 0.0), atol=1e-6)  # (p_d - centre) in dm
    np.testing.assert_allclose(obs_a[6:8], 0.0, atol=1e-6)
    np.testing.assert_allclose(obs_a[8:], (0.0, 1.0), atol=1e-6)
    assert info_a["tracking_error_m"] < 0.02
    np.testing.assert_allclose(info_a["foot_position"], forward_kinematics(obs_a[:2]), atol=1e-6)
    _, info = env.reset(seed=7, options={"phase0": 0.25})
    np.testing.assert_allclose(info["desired_foot_position"], (0.0, CENTRE_Z_M + CLEARANCE_M), atol=1e-15)


def test_seeded_episodes_are_reproducible_across_envs():
    rewards = []
    for _ in range(2):
        leg_env = LegTrackingEnv(seed=3)
        leg_env.reset()
        leg_env.action_space.seed(3)
        rewards.append([leg_env.step(leg_env.action_space.sample())[1] for _ in range(50)])
        leg_env.close()
    assert rewards[0] == rewards[1]


@pytest.mark.parametrize("bad", [np.array([np.nan, 0.0]), np.array([0.0, np.inf]), np.zeros(3)])
def test_invalid_action_raises_value_error(env, bad):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action=.*finite.*NaN/inf"):
        env.step(bad)


def test_envs_coexist_and_close_is_idempotent():
    first, second = LegTrackingEnv(), LegTrackingEnv()
    first.reset(seed=0)
    second.reset(seed=0)
    first.close()
    first.close()
    assert second.step(np.zeros(2))[0].shape == (10,)
    second.close()


def _gravity_torque(q):
    """Joint torque holding the proxy rods (COMs at mid-length) against gravity."""
    s1, s12 = np.sin(q[0]), np.sin(q[0] + q[1])
    knee = SHANK_MASS * GRAVITY * SHANK_LENGTH_M / 2 * s12
    hip = THIGH_MASS * GRAVITY * THIGH_LENGTH_M / 2 * s1 + SHANK_MASS * GRAVITY * THIGH_LENGTH_M * s1 + knee
    return np.array([hip, knee])


def _pd_gravity_action(env, obs):
    """Joint PD on the IK of the next desired point plus gravity compensation."""
    q, qdot = obs[:2].astype(np.float64), obs[2:4] * 10.0
    phase = env.phase + env.frequency_hz * TIMESTEP_S
    q_d = inverse_kinematics(desired_foot_position(phase))
    qdot_d = np.linalg.solve(foot_jacobian(q_d), desired_foot_velocity(phase, env.frequency_hz))
    torque = np.array([300.0, 100.0]) * (q_d - q) + np.array([6.0, 1.0]) * (qdot_d - qdot) + _gravity_torque(q)
    return np.clip(torque / env.max_torque, -1.0, 1.0)


def _episode_return(env, policy):
    obs, _ = env.reset(seed=0)
    total, truncated = 0.0, False
    while not truncated:
        obs, reward, _, truncated, _ = env.step(policy(env, obs))
        total += reward
    return total


def test_pd_with_gravity_compensation_solves_the_task_at_the_torque_bound(env):
    pd_return = _episode_return(env, _pd_gravity_action)
    zero_return = _episode_return(env, lambda e, o: np.zeros(2, dtype=np.float32))
    assert pd_return > 700.0
    assert zero_return < 300.0


def test_make_task_builds_the_leg_and_rejects_unknown_names():
    leg_env, spec = make_task("leg", seed=0, episode_steps=200)
    assert (spec.name, spec.obs_dim, spec.act_dim, spec.episode_steps) == ("leg", 10, 2, 200)
    assert spec.termination_fn is None and isinstance(leg_env, LegTrackingEnv)
    leg_env.close()
    assert TASK_NAMES == ("leg", "stochlite", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
    with pytest.raises(ValueError, match="'legs'.*leg, stochlite, HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5"):
        make_task("legs")


def test_reward_from_the_observation_is_the_envs_reward_and_batched(env):
    import torch

    from stochlite_bringup.task_names import OBSERVED_REWARD_TASKS, TASK_NAMES
    from stochlite_bringup.tasks.leg_observed_reward import leg_reward_from_observation, observed_reward_fn

    env.reset(seed=3, options={"phase0": 0.3})
    rng = np.random.default_rng(3)
    observations, rewards = [], []
    for _ in range(200):  # random torques: the foot leaves the path, so both reward terms vary
        obs, reward, *_ = env.step(rng.uniform(-1.0, 1.0, size=2).astype(np.float32))
        observations.append(obs)
        rewards.append(reward)
    batch = torch.as_tensor(np.array(observations)).reshape(20, 10, 10)
    computed = leg_reward_from_observation(None, None, batch).reshape(-1).numpy()
    assert np.ptp(rewards) > 0.3
    np.testing.assert_allclose(computed, rewards, atol=1e-5)
    task_env, spec = make_task("leg")
    task_env.close()
    assert spec.reward_fn is leg_reward_from_observation
    assert [t for t in TASK_NAMES if observed_reward_fn(t) is not None] == list(OBSERVED_REWARD_TASKS)
