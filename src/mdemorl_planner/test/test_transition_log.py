"""TransitionLog: D_ENV appended to disk, read back exactly, robust to a torn last record."""
import numpy as np
import pytest

from mdemorl_planner.transition_log import RECORDS_FILE, TransitionLog


def batch(n: int, start: float, obs_dim: int = 3, act_dim: int = 2) -> dict[str, np.ndarray]:
    values = start + np.arange(n, dtype=np.float32)
    return {"obs": np.repeat(values[:, None], obs_dim, 1), "act": np.repeat(-values[:, None], act_dim, 1),
            "reward": values * 0.5, "next_obs": np.repeat(values[:, None] + 0.25, obs_dim, 1),
            "terminated": (values % 2 == 0).astype(np.float32)}


def test_appended_batches_read_back_in_order_across_reopenings(tmp_path):
    log = TransitionLog(tmp_path / "d_env", 3, 2)
    log.append(batch(4, 0.0))
    log.append(batch(3, 4.0))
    reopened = TransitionLog(tmp_path / "d_env", 3, 2)
    assert len(reopened) == 7
    reopened.append(batch(2, 7.0))
    data = TransitionLog(tmp_path / "d_env", 3, 2).load()
    expected = batch(9, 0.0)
    for key, value in expected.items():
        np.testing.assert_array_equal(data[key], value, err_msg=key)


def test_a_torn_last_record_is_ignored_then_cut_off_before_the_next_append(tmp_path):
    log = TransitionLog(tmp_path, 3, 2)
    log.append(batch(5, 0.0))
    with open(tmp_path / RECORDS_FILE, "ab") as stream:  # a crash in the middle of the sixth record
        stream.write(np.arange(4, dtype="<f4").tobytes())
    assert len(log) == 5 and len(log.load()["reward"]) == 5
    reopened = TransitionLog(tmp_path, 3, 2)
    reopened.append(batch(1, 5.0))
    np.testing.assert_array_equal(reopened.load()["obs"][:, 0], np.arange(6, dtype=np.float32))


def test_another_task_in_the_same_directory_is_refused_and_clear_empties(tmp_path):
    log = TransitionLog(tmp_path, 3, 2)
    log.append(batch(2, 0.0))
    with pytest.raises(ValueError, match="not this task's"):
        TransitionLog(tmp_path, 4, 2)
    log.clear()
    assert len(log) == 0 and log.load()["obs"].shape == (0, 3)
