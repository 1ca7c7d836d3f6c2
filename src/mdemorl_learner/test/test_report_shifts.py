"""The report's Fig. 4 pairing: each generator command against the torso orientation logged nearest to it."""
import numpy as np
import pytest
from geometry_msgs.msg import Vector3, Vector3Stamped
from std_msgs.msg import Float64MultiArray

from mdemorl_learner.report import plot_shifts_against_tilt, shifts_against_tilt


def gait_message(x_m: float, y_m: float) -> Float64MultiArray:
    """Legs fl, fr, bl, br: x shifts x_m +- 0.01, y shifts y_m +- 0.02 (mean x_m, y_m), z 0.05, step 0.08."""
    shifts = [(x_m + 0.01, y_m + 0.02, 0.05), (x_m - 0.01, y_m - 0.02, 0.05),
              (x_m + 0.01, y_m - 0.02, 0.05), (x_m - 0.01, y_m + 0.02, 0.05)]
    return Float64MultiArray(data=[v for leg in shifts for v in leg] + [0.08])


def test_each_command_pairs_its_mean_shifts_with_the_nearest_pitch_and_roll(tmp_path):
    rpy = [(0.01 * k, Vector3Stamped(vector=Vector3(x=0.1 * k, y=-0.2 * k, z=3.0))) for k in range(5)]
    gait = [(0.01 * k + 0.002, gait_message(0.001 * k, -0.003 * k)) for k in range(4)]  # 2 ms after its state
    gait.append((0.038, gait_message(0.5, 0.7)))  # nearer to the state at 0.04 s than to the one at 0.03 s
    shifts, tilt = shifts_against_tilt(gait, rpy)
    np.testing.assert_allclose(shifts, [[0.0, 0.0], [0.001, -0.003], [0.002, -0.006], [0.003, -0.009], [0.5, 0.7]],
                               atol=1e-12)
    np.testing.assert_allclose(tilt, [[-0.2 * k, 0.1 * k] for k in (0, 1, 2, 3, 4)])  # (pitch, roll)
    out = tmp_path / "shifts_vs_tilt.png"
    plot_shifts_against_tilt(shifts, tilt, out, "synthetic")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_command_before_the_first_orientation_pairs_with_the_first():
    rpy = [(1.0, Vector3Stamped(vector=Vector3(x=0.3, y=0.4))), (2.0, Vector3Stamped(vector=Vector3(x=0.5, y=0.6)))]
    _, tilt = shifts_against_tilt([(0.5, gait_message(0.0, 0.0))], rpy)
    assert tilt.tolist() == [[pytest.approx(0.4), pytest.approx(0.3)]]
