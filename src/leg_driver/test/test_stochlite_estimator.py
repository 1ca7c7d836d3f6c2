"""The hardware estimator against PyBullet's ground truth: StochliteSimulation trotting open-loop, its joint states and
IMU fed to StochliteEstimator.

Leg odometry assumes the stance feet do not slip. In the simulation the open-loop trot's feet slip a lot
(measured here: the robot makes 0.11 m/s of the 0.25 m/s the 0.05 m step commands, 0.32 of 0.5 m/s at
0.1 m), so the estimate reads high by the slip. Two checks, each averaged over a gait cycle (0.4 s):
the estimate equals the truth minus the slip of the feet it judged in stance (measured from PyBullet's
foot links) within 0.03 m/s, i.e. the odometry itself is right; and it is within 0.2 m/s of the truth
(the documented tolerance on this slippery trot) and rises with it."""
import numpy as np
import pybullet
import pytest
from stochlite_bringup.tasks.stochlite_env import stochlite_observation
from stochlite_bringup.tasks.stochlite_gait import (FREQUENCY_HZ, MAX_STEP_LENGTH_M, foot_targets, gait_command,
                                                    joint_targets, standing_joint_targets)
from stochlite_bringup.tasks.stochlite_simulation import CONTROL_PERIOD_S, StochliteSimulation

from leg_driver.stochlite_estimator import FOOT_RADIUS_M, StochliteEstimator

CYCLE_STEPS = round(1.0 / FREQUENCY_HZ / CONTROL_PERIOD_S)  # 40
SPEED_TOLERANCE = 0.2  # m/s, per gait-cycle mean: bounded by the feet's slip (see above)
ODOMETRY_TOLERANCE = 0.03  # m/s, per gait-cycle mean, once the measured slip is taken out


def contact_slip_x(sim, stance) -> float:
    """Mean forward world velocity [m/s] of the material contact points of the ``stance`` feet (0 without slip)."""
    links = pybullet.getLinkStates(sim._body, sim.foot_links, computeLinkVelocity=1, physicsClientId=sim._client)
    slips = [np.array(s[6]) + np.cross(s[7], (0.0, 0.0, -FOOT_RADIUS_M)) for s in links]
    return float(np.mean([v[0] for v, on in zip(slips, stance) if on]))


@pytest.fixture(scope="module")
def sim():
    simulation = StochliteSimulation()
    yield simulation
    simulation.close()


def trot(sim, step_length_m: float, cycles: int = 3):
    """(true velocity, estimate, true state, slip of the judged stance feet) per step, after one settling cycle."""
    sim.reset(standing_joint_targets())
    for _ in range(30):
        sim.step(standing_joint_targets())
    estimator = StochliteEstimator()
    command = gait_command(np.r_[np.zeros(12), 2.0 * step_length_m / MAX_STEP_LENGTH_M - 1.0])
    start = sim.time_s
    rows = []
    for k in range(CYCLE_STEPS * (cycles + 1)):
        state = sim.step(joint_targets(foot_targets(sim.time_s - start, command)))
        estimate = estimator.update(sim.time_s, state.q, state.qdot, state.torque, state.quaternion,
                                    state.angular_velocity)
        if k >= CYCLE_STEPS:
            rows.append((state.linear_velocity, estimate, state, contact_slip_x(sim, estimate.stance)))
    return rows


def cycle_means(values):
    values = np.asarray(values)
    return values.reshape(-1, CYCLE_STEPS, *values.shape[1:]).mean(axis=1)


def test_estimated_forward_speed_tracks_the_truth_over_each_gait_cycle(sim):
    speeds = {}
    for step_length in (0.05, 0.1):
        rows = trot(sim, step_length)
        true_vx = cycle_means([r[0][0] for r in rows])
        est_vx = cycle_means([r[1].observation[3] for r in rows])
        slip_x = cycle_means([r[3] for r in rows])
        assert np.all(np.abs(est_vx - (true_vx - slip_x)) < ODOMETRY_TOLERANCE), (step_length, true_vx, slip_x, est_vx)
        assert np.all(np.abs(est_vx - true_vx) < SPEED_TOLERANCE), (step_length, true_vx, est_vx)
        assert np.all(np.abs(cycle_means([r[1].observation[4] for r in rows])) < 0.1)  # no sideways drift made up
        speeds[step_length] = (true_vx.mean(), est_vx.mean())
    assert speeds[0.1][0] > speeds[0.05][0] + 0.05 and speeds[0.1][1] > speeds[0.05][1] + 0.05, speeds


def test_attitude_rates_height_slope_and_phase_match_the_env(sim):
    rows = trot(sim, 0.1, cycles=1)
    for _, estimate, state, _ in rows:
        truth = stochlite_observation(state, sim)
        obs = estimate.observation
        np.testing.assert_allclose(obs[:3], truth[:3], atol=1e-5)  # roll, pitch, yaw from the quaternion
        np.testing.assert_allclose(obs[6:9], truth[6:9], atol=1e-5)  # body rates from the gyro
        np.testing.assert_allclose(obs[10:12], truth[10:12], atol=1e-6)  # the stated slope
        assert not estimate.terminated
    heights = np.array([(r[1].observation[9], stochlite_observation(r[2], sim)[9]) for r in rows])
    assert np.abs(heights[:, 0] - heights[:, 1]).max() < 0.015  # stance-foot kinematics vs the base's true height


def test_phase_starts_at_the_first_update_and_reward_uses_the_estimated_velocity():
    estimator = StochliteEstimator()
    standing = standing_joint_targets()
    upright = (0.0, 0.0, 0.0, 1.0)
    first = estimator.update(100.0, standing, np.zeros(12), np.zeros(12), upright, np.zeros(3))
    np.testing.assert_allclose(first.observation[12:], (0.0, 1.0), atol=1e-6)
    later = estimator.update(100.1, standing, np.zeros(12), np.zeros(12), upright, np.zeros(3))
    np.testing.assert_allclose(later.observation[12:], (np.sin(2 * np.pi * 0.25), np.cos(2 * np.pi * 0.25)), atol=1e-6)
    assert later.reward == pytest.approx(0.5)  # standing still, upright: only the upright term
    assert later.stance.all() and later.observation[9] == pytest.approx(0.25 + 0.015, abs=1e-4)  # foot centres 0.25 m down, radius 0.015 m
    fallen = estimator.update(100.2, standing, np.zeros(12), np.zeros(12), (0.0, 0.7071068, 0.0, 0.7071068), np.zeros(3))
    assert fallen.terminated  # pitched 90 degrees
