"""StochLite model and simulation: the URDF's masses, the standing pose held, the IMU-like readings."""
import numpy as np
import pybullet
import pytest

from stochlite_bringup.tasks.stochlite_gait import standing_joint_targets
from stochlite_bringup.tasks.stochlite_kinematics import leg_forward_kinematics
from stochlite_bringup.tasks.stochlite_simulation import (
    JOINT_LOWER_RAD,
    JOINT_NAMES,
    JOINT_UPPER_RAD,
    PHYSICS_TIMESTEP_S,
    StochliteSimulation,
    servo_torque,
    slope_quaternion,
)

HIPS = np.array([(0.167, 0.096, 0.0), (0.167, -0.096, 0.0), (-0.167, 0.096, 0.0), (-0.167, -0.096, 0.0)])


@pytest.fixture
def sim():
    s = StochliteSimulation()
    yield s
    s.close()


def test_urdf_mass_limits_and_joints(sim):
    body, client = sim._body, sim._client
    masses = [pybullet.getDynamicsInfo(body, link, physicsClientId=client)[0]
              for link in range(-1, pybullet.getNumJoints(body, physicsClientId=client))]
    assert sum(masses) == pytest.approx(3.230, abs=1e-6)
    assert masses[0] == pytest.approx(1.582)
    assert pybullet.getDynamicsInfo(body, -1, physicsClientId=client)[2] == pytest.approx((0.00576, 0.02534, 0.03026))
    infos = [pybullet.getJointInfo(body, j, physicsClientId=client) for j in sim.joint_indices]
    assert [i[1].decode() for i in infos] == list(JOINT_NAMES)
    assert all(i[2] == pybullet.JOINT_REVOLUTE and i[10] == 7.0 and i[11] == 10.0 for i in infos)
    assert [tuple(infos[k][13]) for k in range(3)] == [(1, 0, 0), (0, 1, 0), (0, 1, 0)]
    np.testing.assert_allclose([i[8] for i in infos], JOINT_LOWER_RAD)  # the limits the sim bridge clamps to
    np.testing.assert_allclose([i[9] for i in infos], JOINT_UPPER_RAD)


def test_foot_frames_match_forward_kinematics(sim):
    q = np.array([0.2, 0.3, -1.0, -0.1, 0.5, -0.8, 0.3, -0.2, -0.5, -0.2, 0.1, -1.5])
    sim.reset(q)
    pybullet.resetBasePositionAndOrientation(sim._body, (0, 0, 1), (0, 0, 0, 1), physicsClientId=sim._client)
    feet = sim.foot_positions() - (0, 0, 1)
    for leg, side in enumerate((1, -1, 1, -1)):
        np.testing.assert_allclose(feet[leg] - HIPS[leg], leg_forward_kinematics(q[3 * leg:3 * leg + 3], side),
                                   atol=1e-6)


def test_stands_two_seconds_on_flat_ground(sim):
    q0 = standing_joint_targets()
    state = sim.reset(q0)
    for _ in range(200):  # 2 s at 100 Hz
        state = sim.step(q0)
    assert sim.time_s == pytest.approx(2.0)
    assert 0.22 < state.position[2] < 0.29  # feet 0.25 m below the hips, sphere radius 0.015 m
    assert np.all(np.abs(state.rpy[:2]) < 0.1)
    assert np.all(np.abs(state.q - q0) < 0.2)
    assert np.linalg.norm(state.linear_acceleration) == pytest.approx(9.81, abs=3.0)  # the accelerometer sees g


def test_dropped_on_a_slope_it_lies_with_the_plane():
    sim = StochliteSimulation(slope_roll_deg=0.0, slope_pitch_deg=-10.0)
    try:
        state = sim.reset(standing_joint_targets())
        assert state.rpy[1] == pytest.approx(np.radians(-10.0), abs=1e-6)
        assert sim.height_above_ground(state.position) == pytest.approx(0.28)
        for _ in range(50):
            state = sim.step(standing_joint_targets())
        assert 0.2 < sim.height_above_ground(state.position) < 0.29
    finally:
        sim.close()


def test_servo_law_and_bad_input(sim):
    np.testing.assert_allclose(servo_torque([0.01, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.1, 0.0]), [4.0, -1.0, 7.0])
    assert PHYSICS_TIMESTEP_S == 0.0001
    with pytest.raises(ValueError, match="joint_targets"):
        sim.step(np.zeros(11))
    with pytest.raises(ValueError, match="slope_pitch_deg"):
        slope_quaternion(0.0, 45.0)
