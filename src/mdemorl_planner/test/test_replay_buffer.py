import numpy as np
import pytest

from mdemorl_planner.replay_buffer import ReplayBuffer, sample_union

OBS, ACT = 3, 2


def transition(i: int) -> tuple:
    """Transition whose every field encodes the integer ``i``."""
    return (
        np.full(OBS, i, np.float32),
        np.full(ACT, -i, np.float32),
        float(i),
        np.full(OBS, i + 0.5, np.float32),
        i % 2 == 0,
    )


def batch(ids) -> tuple:
    fields = list(zip(*(transition(i) for i in ids)))
    return tuple(np.asarray(f) for f in fields)


def assert_holds(buf: ReplayBuffer, ids) -> None:
    """``buf.all()`` is exactly the transitions ``ids`` in that order."""
    data = buf.all()
    obs, act, reward, next_obs, terminated = batch(ids)
    assert len(buf) == len(ids)
    np.testing.assert_array_equal(data["obs"], obs)
    np.testing.assert_array_equal(data["act"], act)
    np.testing.assert_array_equal(data["reward"], reward)
    np.testing.assert_array_equal(data["next_obs"], next_obs)
    np.testing.assert_array_equal(data["terminated"], terminated.astype(np.float32))
    assert all(v.dtype == np.float32 for v in data.values())


def test_add_wraps_around_in_insertion_order():
    buf = ReplayBuffer(OBS, ACT, capacity=4)
    for i in range(3):
        buf.add(*transition(i))
    assert_holds(buf, [0, 1, 2])
    for i in range(3, 7):
        buf.add(*transition(i))
    assert_holds(buf, [3, 4, 5, 6])


def test_add_batch_larger_than_free_space():
    buf = ReplayBuffer(OBS, ACT, capacity=5)
    buf.add_batch(*batch(range(3)))
    buf.add_batch(*batch(range(3, 7)))
    assert_holds(buf, [2, 3, 4, 5, 6])
    buf.add(*transition(7))
    assert_holds(buf, [3, 4, 5, 6, 7])


def test_add_batch_larger_than_capacity_keeps_newest():
    buf = ReplayBuffer(OBS, ACT, capacity=4)
    buf.add(*transition(100))
    buf.add_batch(*batch(range(10)))
    assert_holds(buf, [6, 7, 8, 9])
    buf.add_batch(*batch(range(10, 12)))
    assert_holds(buf, [8, 9, 10, 11])


def test_add_batch_of_zero_rows_is_a_no_op():
    buf = ReplayBuffer(OBS, ACT, capacity=4)
    buf.add(*transition(1))
    buf.add_batch(
        np.zeros((0, OBS)), np.zeros((0, ACT)), np.zeros(0), np.zeros((0, OBS)), np.zeros(0)
    )
    assert_holds(buf, [1])


def test_sample_returns_only_filled_rows():
    buf = ReplayBuffer(OBS, ACT, capacity=100)
    buf.add_batch(*batch(range(1, 6)))
    out = buf.sample(2000, np.random.default_rng(0))
    assert out["obs"].shape == (2000, OBS) and out["reward"].shape == (2000,)
    assert set(np.unique(out["reward"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # rows stay consistent across fields
    np.testing.assert_array_equal(out["obs"][:, 0], out["reward"])
    np.testing.assert_array_equal(out["next_obs"][:, 0], out["reward"] + 0.5)


def test_sample_from_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(OBS, ACT, 4).sample(1, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["buf.npz", "buf"])
def test_save_load_round_trip(tmp_path, name):
    buf = ReplayBuffer(OBS, ACT, capacity=5)
    buf.add_batch(*batch(range(7)))
    path = tmp_path / name
    buf.save(path)
    loaded = ReplayBuffer.load(path)
    assert loaded.capacity == 5 and (loaded.obs_dim, loaded.act_dim) == (OBS, ACT)
    assert_holds(loaded, [2, 3, 4, 5, 6])
    # same ring position: the next insert evicts the same row in both
    for b in (buf, loaded):
        b.add(*transition(7))
    assert_holds(loaded, [3, 4, 5, 6, 7])
    for k, v in buf.all().items():
        np.testing.assert_array_equal(loaded.all()[k], v)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("obs", np.zeros(OBS + 1), r"obs: expected shape \(3,\), got \(4,\)"),
        ("act", np.zeros((1, ACT)), r"act: expected shape \(2,\), got \(1, 2\)"),
        ("reward", np.zeros(2), r"reward: expected shape \(\), got \(2,\)"),
        ("next_obs", np.array([0.0, np.nan, 0.0]), "next_obs: contains non-finite"),
        ("reward", np.inf, "reward: contains non-finite"),
        ("terminated", np.nan, "terminated: contains non-finite"),
    ],
)
def test_add_rejects_bad_input_and_stays_unchanged(field, value, message):
    buf = ReplayBuffer(OBS, ACT, capacity=3)
    buf.add_batch(*batch(range(4)))
    args = dict(zip(["obs", "act", "reward", "next_obs", "terminated"], transition(9)))
    args[field] = value
    with pytest.raises(ValueError, match=message):
        buf.add(**args)
    assert_holds(buf, [1, 2, 3])


@pytest.mark.parametrize(
    "field, message",
    [
        ("obs", r"obs: expected shape \(N, 3\), got \(5,\)"),
        ("act", r"act: expected shape \(4, 2\), got \(4, 3\)"),
        ("reward", r"reward: expected shape \(4,\), got \(3,\)"),
        ("next_obs", "next_obs: contains non-finite"),
        ("terminated", r"terminated: expected shape \(4,\), got \(4, 1\)"),
    ],
)
def test_add_batch_rejects_bad_input_and_stays_unchanged(field, message):
    buf = ReplayBuffer(OBS, ACT, capacity=3)
    buf.add_batch(*batch(range(4)))
    args = dict(zip(["obs", "act", "reward", "next_obs", "terminated"], batch(range(10, 14))))
    args[field] = {
        "obs": np.zeros(5),
        "act": np.zeros((4, 3)),
        "reward": np.zeros(3),
        "next_obs": np.where(np.arange(OBS) == 1, np.nan, np.zeros((4, OBS))),
        "terminated": np.zeros((4, 1)),
    }[field]
    with pytest.raises(ValueError, match=message):
        buf.add_batch(**args)
    assert_holds(buf, [1, 2, 3])


def filled(marker: float, n: int = 10) -> ReplayBuffer:
    buf = ReplayBuffer(OBS, ACT, capacity=n)
    buf.add_batch(
        np.zeros((n, OBS)), np.zeros((n, ACT)), np.full(n, marker), np.zeros((n, OBS)), np.zeros(n)
    )
    return buf


@pytest.mark.parametrize(
    "fractions, batch_size, expected",
    [((0.25, 0.75), 64, (16, 48)), ((0.95, 0.05), 256, (243, 13)), ((1, 1, 2), 10, (3, 2, 5))],
)
def test_sample_union_counts_follow_fractions(fractions, batch_size, expected):
    buffers = [filled(float(i)) for i in range(len(fractions))]
    out = sample_union(buffers, fractions, batch_size, np.random.default_rng(3))
    assert out["obs"].shape == (batch_size, OBS)
    counts = tuple(int((out["reward"] == i).sum()) for i in range(len(fractions)))
    assert counts == expected


def test_sample_union_falls_back_to_non_empty_buffers():
    env, mpc = ReplayBuffer(OBS, ACT, 10), filled(7.0)
    out = sample_union([env, mpc], [0.9, 0.1], 32, np.random.default_rng(0))
    np.testing.assert_array_equal(out["reward"], np.full(32, 7.0, np.float32))
    # zero weight on the only non-empty buffer still yields a full batch from it
    out = sample_union([env, mpc], [1.0, 0.0], 8, np.random.default_rng(0))
    np.testing.assert_array_equal(out["reward"], np.full(8, 7.0, np.float32))


def test_sample_union_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="all buffers are empty"):
        sample_union([ReplayBuffer(OBS, ACT, 4)], [1.0], 4, rng)
    with pytest.raises(ValueError, match="one fraction per buffer"):
        sample_union([filled(0.0)], [0.5, 0.5], 4, rng)
    with pytest.raises(ValueError, match="fractions must be finite and >= 0"):
        sample_union([filled(0.0), filled(1.0)], [1.5, -0.5], 4, rng)
    with pytest.raises(ValueError, match="differ in"):
        sample_union([filled(0.0), ReplayBuffer(OBS + 1, ACT, 4)], [0.5, 0.5], 4, rng)
