"""StochLite trot generator and leg kinematics: the ellipse's known points, the phases, IK against FK."""
import numpy as np
import pytest

from stochlite_bringup.tasks.stochlite_gait import (
    CENTRE_Z_M,
    CLEARANCE_M,
    FREQUENCY_HZ,
    foot_target,
    foot_targets,
    gait_command,
    joint_targets,
    leg_phases,
)
from stochlite_bringup.tasks.stochlite_kinematics import (
    REACH_M,
    clamp_to_reach,
    leg_forward_kinematics,
    leg_inverse_kinematics,
    planar_foot_position,
)

CENTRE = np.array([0.0, 0.096, CENTRE_Z_M])


def test_ellipse_known_points():
    length = 0.08
    back, apex, front, mid_stance = foot_target(np.array([0.0, np.pi / 2, np.pi, 1.5 * np.pi]), CENTRE, length)
    np.testing.assert_allclose(back, (-0.04, 0.096, -0.25), atol=1e-12)
    np.testing.assert_allclose(apex, (0.0, 0.096, -0.25 + CLEARANCE_M), atol=1e-12)
    np.testing.assert_allclose(front, (0.04, 0.096, -0.25), atol=1e-12)
    np.testing.assert_allclose(mid_stance, CENTRE, atol=1e-12)  # flat bottom passes the centre
    theta = np.linspace(0.0, np.pi, 50, endpoint=False)
    p = foot_target(theta, CENTRE, length)
    np.testing.assert_allclose((p[:, 0] / 0.04) ** 2 + ((p[:, 2] - CENTRE_Z_M) / CLEARANCE_M) ** 2, 1.0)


def test_trot_phases_and_action_mapping():
    np.testing.assert_allclose(leg_phases(0.0), (0.0, np.pi, np.pi, 0.0))
    np.testing.assert_allclose(leg_phases(0.25 / FREQUENCY_HZ), (np.pi / 2, 1.5 * np.pi, 1.5 * np.pi, np.pi / 2))
    action = np.zeros(13)
    action[0:3] = (1.0, -1.0, 0.5)  # fl: x +0.02, y -0.02, z +0.01
    action[12] = 1.0
    command = gait_command(action)
    np.testing.assert_allclose(command.shifts[0], (0.02, -0.02, 0.01))
    np.testing.assert_allclose(command.shifts[1:], 0.0)
    assert command.step_length_m == pytest.approx(0.1)
    assert gait_command(np.zeros(13)).step_length_m == pytest.approx(0.05)
    assert gait_command(np.full(13, 5.0)).step_length_m == pytest.approx(0.1)  # clipped
    feet = foot_targets(0.0, command)
    np.testing.assert_allclose(feet[0], (0.02 - 0.05, 0.096 - 0.02, -0.25 + 0.01), atol=1e-12)
    with pytest.raises(ValueError, match="13 finite"):
        gait_command(np.full(13, np.nan))


@pytest.mark.parametrize("side", [1, -1])
def test_ik_round_trips_fk_over_a_grid(side):
    a, h, k = np.meshgrid(np.linspace(-0.45, 0.45, 7), np.linspace(-1.2, 1.2, 9), np.linspace(-2.6, -0.05, 9))
    q = np.stack((a.ravel(), h.ravel(), k.ravel()), axis=-1)
    q = q[planar_foot_position(q[:, 1], q[:, 2])[1] < -0.02]  # the foot below the hip (the IK's branch)
    np.testing.assert_allclose(leg_inverse_kinematics(leg_forward_kinematics(q, side), side), q, atol=1e-9)


def test_reach_clamp_and_standing_pose():
    far = np.array([0.2, 0.15, -0.3])
    near = clamp_to_reach(far, 1)
    radial = np.sqrt(near[1] ** 2 + near[2] ** 2 - 0.096**2)
    assert np.hypot(near[0], radial) == pytest.approx(0.98 * REACH_M)
    np.testing.assert_allclose(leg_forward_kinematics(leg_inverse_kinematics(near, 1), 1), near, atol=1e-12)
    with pytest.raises(ValueError, match="out of the leg's reach"):
        leg_inverse_kinematics(far, 1)
    q = joint_targets(np.array([CENTRE, CENTRE * (1, -1, 1), CENTRE, CENTRE * (1, -1, 1)]))
    np.testing.assert_allclose(q[0::3], 0.0, atol=1e-12)  # abduction 0 under the hip
    assert np.all(q[2::3] < 0.0)  # knees bent backward
