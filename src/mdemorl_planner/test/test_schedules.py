"""Known values of the DMD-MPC schedules."""
import pytest

from mdemorl_planner.schedules import LinearSchedule, horizon_schedule, mpc_batch_schedule, num_samples_schedule


def test_linear_schedule_int_values_and_clamping():
    schedule = LinearSchedule(start_epoch=10, end_epoch=20, start_value=5, end_value=15)
    assert [schedule(e) for e in (0, 10, 13, 15, 19, 20, 50)] == [5, 5, 8, 10, 14, 15, 15]
    assert isinstance(schedule(13), int)


def test_linear_schedule_float_and_decreasing():
    schedule = LinearSchedule(0, 4, 1.0, 0.0)
    assert schedule(1) == pytest.approx(0.75)
    assert schedule(-3) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.0)


def test_linear_schedule_step_when_epochs_equal():
    schedule = LinearSchedule(5, 5, 1, 3)
    assert (schedule(4), schedule(5), schedule(6)) == (1, 3, 3)


def test_linear_schedule_rejects_reversed_epochs():
    with pytest.raises(ValueError):
        LinearSchedule(10, 5, 1, 2)


def test_paper_schedules():
    horizon = horizon_schedule()
    assert (horizon(0), horizon(60), horizon(100), horizon(500)) == (5, 10, 15, 15)
    assert num_samples_schedule()(0) == 100 and num_samples_schedule()(1000) == 100
    batch = mpc_batch_schedule()
    assert (batch(0), batch(25), batch(50), batch(80)) == (1000, 5500, 10_000, 10_000)
