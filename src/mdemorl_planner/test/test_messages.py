"""Round trips and rejections of the message conversions (through real CDR serialisation)."""

import io

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from mdemorl_msgs.msg import Snapshot, TransitionBatch
from rclpy.serialization import deserialize_message, serialize_message

from mdemorl_planner.messages import (
    TORCH_STATE_DICT_FORMAT,
    batch_to_msg,
    bytes_to_state_dict,
    msg_to_batch,
    msg_to_payload,
    snapshot_to_msg,
    state_dict_to_bytes,
)


def _batch(n=50, obs_dim=10, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "act": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminated": rng.random(n) < 0.2,
    }


def _over_the_wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_transition_batch_round_trip_is_exact():
    data = _batch()
    msg = batch_to_msg(data, "env", policy_version=7, stamp=Time(sec=3, nanosec=5))
    assert (msg.source, msg.obs_dim, msg.act_dim, msg.count, msg.policy_version) == ("env", 10, 2, 50, 7)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 5)
    back = msg_to_batch(_over_the_wire(msg))
    assert {k: v.shape for k, v in back.items()} == {
        "obs": (50, 10), "act": (50, 2), "reward": (50,), "next_obs": (50, 10), "terminated": (50,)
    }
    for key in ("obs", "act", "reward", "next_obs"):
        np.testing.assert_array_equal(back[key], data[key])
        assert back[key].dtype == np.float32
    np.testing.assert_array_equal(back["terminated"], data["terminated"].astype(np.float32))


def test_float64_and_float_terminated_inputs_convert_and_empty_batches_work():
    data = {k: v.astype(np.float64) for k, v in _batch(n=4).items()}
    back = msg_to_batch(batch_to_msg(data, "mpc", 0))
    np.testing.assert_allclose(back["obs"], data["obs"], rtol=1e-7)
    np.testing.assert_array_equal(back["terminated"], data["terminated"])
    empty = msg_to_batch(_over_the_wire(batch_to_msg(_batch(n=0), "env", 0)))
    assert empty["obs"].shape == (0, 10) and empty["terminated"].shape == (0,)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("act", np.zeros((49, 2)), r"act: expected shape \(50, 2\) \(N=50 from obs\), got \(49, 2\)"),
        ("next_obs", np.zeros((50, 9)), r"next_obs: expected shape \(50, 10\).*got \(50, 9\)"),
        ("reward", np.zeros((50, 1)), r"reward: expected shape \(50,\).*got \(50, 1\)"),
        ("obs", np.zeros(50), r"obs: expected shape \(N, obs_dim\)"),
        ("terminated", np.full(50, 0.5), r"terminated: expected bools or 0/1"),
    ],
)
def test_batch_to_msg_rejects_inconsistent_shapes_naming_the_field(key, value, match):
    data = _batch()
    data[key] = value
    with pytest.raises(ValueError, match=match):
        batch_to_msg(data, "env", 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_batch_to_msg_rejects_non_finite_values(bad):
    data = _batch()
    data["reward"] = data["reward"].astype(np.float64)
    data["reward"][17] = bad
    with pytest.raises(ValueError, match="reward: value in transition 17 is not a finite float32"):
        batch_to_msg(data, "env", 0)


def test_batch_to_msg_rejects_missing_fields_and_negative_versions():
    data = _batch()
    del data["next_obs"]
    with pytest.raises(ValueError, match=r"missing \['next_obs'\]"):
        batch_to_msg(data, "env", 0)
    with pytest.raises(ValueError, match="policy_version=-1"):
        batch_to_msg(_batch(), "env", -1)


def test_msg_to_batch_rejects_wrong_lengths_and_nan_naming_the_field():
    msg = _over_the_wire(batch_to_msg(_batch(n=5), "env", 0))
    short = _over_the_wire(msg)
    short.obs = short.obs[:-1]
    with pytest.raises(ValueError, match=r"from 'env': obs has 49 values, expected count \* obs_dim = 5 \* 10 = 50"):
        msg_to_batch(short)
    wrong_count = _over_the_wire(msg)
    wrong_count.count = 6
    with pytest.raises(ValueError, match=r"obs has 50 values, expected count \* obs_dim = 6 \* 10 = 60"):
        msg_to_batch(wrong_count)
    missing_flags = _over_the_wire(msg)
    missing_flags.terminated = [False] * 4
    with pytest.raises(ValueError, match=r"terminated has 4 values, expected count \* 1 = 5"):
        msg_to_batch(missing_flags)
    nan = _over_the_wire(msg)
    nan.next_obs[3] = float("nan")
    with pytest.raises(ValueError, match="next_obs contains non-finite values"):
        msg_to_batch(nan)
    zero_dim = TransitionBatch(source="mpc")
    with pytest.raises(ValueError, match="obs_dim=0 and act_dim=0 must be >= 1"):
        msg_to_batch(zero_dim)


def test_snapshot_round_trip_of_a_state_dict():
    module = torch.nn.Linear(4, 3)
    payload = state_dict_to_bytes(module.state_dict())
    msg = snapshot_to_msg("policy", 12, payload)
    assert (msg.kind, msg.version, msg.format) == ("policy", 12, TORCH_STATE_DICT_FORMAT)
    assert len(msg.checksum) == 64
    received = _over_the_wire(msg)
    restored = torch.nn.Linear(4, 3)
    restored.load_state_dict(bytes_to_state_dict(msg_to_payload(received)))
    for name, tensor in module.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor)


def test_corrupt_snapshot_is_rejected_naming_kind_and_version():
    msg = _over_the_wire(snapshot_to_msg("dynamics", 3, b"\x01\x02\x03\x04"))
    msg.data[2] ^= 0xFF
    with pytest.raises(ValueError, match="Snapshot 'dynamics' version 3 is corrupt: sha256 of its 4 bytes"):
        msg_to_payload(msg)
    wrong_sum = Snapshot(kind="policy", version=1, data=[1, 2], checksum="0" * 64)
    with pytest.raises(ValueError, match="'policy' version 1 is corrupt"):
        msg_to_payload(wrong_sum)


def test_snapshot_rejects_bad_arguments_and_payloads_that_are_not_state_dicts():
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        snapshot_to_msg("", 0, b"")
    with pytest.raises(ValueError, match="'policy': version=-2 must be >= 0"):
        snapshot_to_msg("policy", -2, b"")
    with pytest.raises(ValueError, match="payload of 7 bytes is not a torch state dict"):
        bytes_to_state_dict(b"garbage")
    with pytest.raises(ValueError, match="payload holds a list, not a state dict"):
        bytes_to_state_dict(state_dict_to_bytes([torch.zeros(2)]))


def test_a_payload_written_from_a_gpu_loads_on_the_cpu(monkeypatch):
    """Tensors saved from cuda:0 (their storages tagged so) load as CPU tensors, also on a host without CUDA."""
    module = torch.nn.Linear(4, 3)
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        payload = state_dict_to_bytes({"model": module.state_dict(), "val_loss": 0.5})
    state = bytes_to_state_dict(payload)
    assert state["val_loss"] == 0.5
    for name, tensor in module.state_dict().items():
        assert state["model"][name].device == torch.device("cpu") and torch.equal(state["model"][name], tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_state_dict_to_bytes_writes_gpu_tensors_from_the_cpu():
    payload = state_dict_to_bytes({"model": torch.nn.Linear(4, 3).cuda().state_dict()})
    state = torch.load(io.BytesIO(payload), weights_only=True)  # no map_location: the payload's own locations
    assert {t.device for t in state["model"].values()} == {torch.device("cpu")}
