"""Conversions between the graph's messages and numpy arrays / bytes.

The only module of ``mdemorl_planner`` that imports ROS. Arrays go into the message
through ``array.array`` built from raw bytes (the setters take those as they are),
never element by element.
"""

import array
import hashlib
import io
from collections.abc import Mapping

import numpy as np
import torch
from builtin_interfaces.msg import Time
from mdemorl_msgs.msg import Snapshot, TransitionBatch

from .snapshots import to_cpu

TRANSITION_FIELDS = ("obs", "act", "reward", "next_obs", "terminated")
TORCH_STATE_DICT_FORMAT = "torch-state-dict"


def _float32_array(values: np.ndarray) -> array.array:
    return array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes())


def _checked_batch(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The five arrays as float32 (``terminated`` as bool) after checking shapes and values."""
    missing = [k for k in TRANSITION_FIELDS if k not in data]
    if missing:
        raise ValueError(f"transition batch is missing {missing}; it needs the keys {list(TRANSITION_FIELDS)}")
    arrays = {k: np.asarray(data[k]) for k in TRANSITION_FIELDS}
    obs = arrays["obs"]
    if obs.ndim != 2 or obs.shape[1] < 1:
        raise ValueError(f"obs: expected shape (N, obs_dim) with obs_dim >= 1, got {obs.shape}")
    if arrays["act"].ndim != 2 or arrays["act"].shape[1] < 1:
        raise ValueError(f"act: expected shape (N, act_dim) with act_dim >= 1, got {arrays['act'].shape}")
    n, obs_dim = obs.shape
    expected = {
        "obs": (n, obs_dim),
        "act": (n, arrays["act"].shape[1]),
        "reward": (n,),
        "next_obs": (n, obs_dim),
        "terminated": (n,),
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"{key}: expected shape {shape} (N={n} from obs), got {arrays[key].shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
        checked = {k: arrays[k].astype(np.float32, copy=False) for k in TRANSITION_FIELDS[:4]}
    for key, value in checked.items():
        if not np.isfinite(value).all():
            bad = int(np.flatnonzero(~np.isfinite(value).reshape(n, -1).all(axis=1))[0])
            raise ValueError(
                f"{key}: value in transition {bad} is not a finite float32; drop or fix it before publishing"
            )
    terminated = arrays["terminated"]
    if not np.isin(terminated, (0, 1)).all():
        raise ValueError("terminated: expected bools or 0/1 values")
    checked["terminated"] = terminated.astype(bool)
    return checked


def batch_to_msg(
    data: Mapping[str, np.ndarray], source: str, policy_version: int, stamp: Time | None = None
) -> TransitionBatch:
    """``TransitionBatch`` from arrays ``obs [N,n], act [N,m], reward [N], next_obs [N,n], terminated [N]``.

    Raises ValueError naming the field if a shape disagrees or a value is not finite.
    The header stamp is ``stamp`` (zero if None).
    """
    if policy_version < 0:
        raise ValueError(f"policy_version={policy_version} must be >= 0")
    checked = _checked_batch(data)
    count, obs_dim = checked["obs"].shape
    msg = TransitionBatch(
        source=source,
        obs_dim=obs_dim,
        act_dim=checked["act"].shape[1],
        count=count,
        policy_version=policy_version,
    )
    if stamp is not None:
        msg.header.stamp = stamp
    for key in TRANSITION_FIELDS[:4]:
        setattr(msg, key, _float32_array(checked[key]))
    msg.terminated = checked["terminated"].tolist()
    return msg


def msg_to_batch(msg: TransitionBatch) -> dict[str, np.ndarray]:
    """Arrays of a ``TransitionBatch``, float32 throughout (``terminated`` as 0/1).

    Raises ValueError naming the field if its length disagrees with ``count`` and the
    dimensions, or if a value is not finite.
    """
    if msg.obs_dim < 1 or msg.act_dim < 1:
        raise ValueError(
            f"TransitionBatch from {msg.source!r}: obs_dim={msg.obs_dim} and act_dim={msg.act_dim} must be >= 1"
        )
    n = msg.count
    widths = {"obs": ("obs_dim", msg.obs_dim), "act": ("act_dim", msg.act_dim), "reward": ("1", 1),
              "next_obs": ("obs_dim", msg.obs_dim), "terminated": ("1", 1)}
    for key, (width_name, width) in widths.items():
        got = len(getattr(msg, key))
        if got != n * width:
            raise ValueError(
                f"TransitionBatch from {msg.source!r}: {key} has {got} values, "
                f"expected count * {width_name} = {n} * {width} = {n * width}"
            )
    batch = {
        key: np.frombuffer(getattr(msg, key), dtype=np.float32).reshape(n, width).copy()
        for key, (_, width) in widths.items()
        if key != "terminated"
    }
    batch["reward"] = batch["reward"].reshape(n)
    for key, value in batch.items():
        if not np.isfinite(value).all():
            raise ValueError(f"TransitionBatch from {msg.source!r}: {key} contains non-finite values")
    batch["terminated"] = np.asarray(msg.terminated, dtype=bool).astype(np.float32)
    return batch


def snapshot_to_msg(
    kind: str, version: int, payload: bytes, fmt: str = TORCH_STATE_DICT_FORMAT, stamp: Time | None = None
) -> Snapshot:
    """``Snapshot`` of ``payload`` with its sha256 hex checksum; header stamp ``stamp`` (zero if None)."""
    if not kind:
        raise ValueError("Snapshot kind must be a non-empty string, e.g. 'policy' or 'dynamics'")
    if version < 0:
        raise ValueError(f"Snapshot {kind!r}: version={version} must be >= 0")
    msg = Snapshot(kind=kind, version=version, format=fmt, checksum=hashlib.sha256(payload).hexdigest())
    msg.data = array.array("B", payload)
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def msg_to_payload(msg: Snapshot) -> bytes:
    """The data of a ``Snapshot``; ValueError naming kind and version if the checksum disagrees."""
    payload = bytes(msg.data)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != msg.checksum:
        raise ValueError(
            f"Snapshot {msg.kind!r} version {msg.version} is corrupt: sha256 of its {len(payload)} bytes is "
            f"{digest}, the message says {msg.checksum!r}; discard it and wait for the next version"
        )
    return payload


def state_dict_to_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a module's ``state_dict`` (``torch.save``) with its tensors on the CPU, so that any host loads it."""
    buffer = io.BytesIO()
    torch.save(to_cpu(state_dict), buffer)
    return buffer.getvalue()


def bytes_to_state_dict(payload: bytes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_dict_to_bytes`, loading tensors only (``weights_only=True``) onto the CPU (also
    those of a payload written with tensors on a GPU)."""
    try:
        state_dict = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, IndexError, RuntimeError, UnpicklingError, ...
        raise ValueError(f"payload of {len(payload)} bytes is not a torch state dict: {error}") from error
    if not isinstance(state_dict, dict):
        raise ValueError(f"payload holds a {type(state_dict).__name__}, not a state dict")
    return state_dict
