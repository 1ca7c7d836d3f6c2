"""Replay buffers for the SAC outer loop (D_ENV and D_MPC) and union sampling."""

from collections.abc import Sequence
from os import PathLike

import numpy as np

FIELDS = ("obs", "act", "reward", "next_obs", "terminated")


def _checked(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``value`` as float32 after checking its shape and finiteness."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains non-finite values")
    return arr


class ReplayBuffer:
    """Preallocated numpy ring buffer of (obs, act, reward, next_obs, terminated)."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        if obs_dim < 1 or act_dim < 1 or capacity < 1:
            raise ValueError(
                f"obs_dim, act_dim and capacity must be >= 1, got {obs_dim}, {act_dim}, {capacity}"
            )
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.capacity = capacity
        self._data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "act": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros(capacity, np.float32),
        }
        self._ptr = 0  # next row to write
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _shapes(self, n: int | None) -> dict[str, tuple[int, ...]]:
        lead = () if n is None else (n,)
        return {
            "obs": lead + (self.obs_dim,),
            "act": lead + (self.act_dim,),
            "reward": lead,
            "next_obs": lead + (self.obs_dim,),
            "terminated": lead,
        }

    def add(self, obs, act, reward, next_obs, terminated) -> None:
        """Store one transition (``terminated`` may be a bool)."""
        values = dict(zip(FIELDS, (obs, act, reward, next_obs, terminated)))
        checked = {k: _checked(k, values[k], s)[None] for k, s in self._shapes(None).items()}
        self._write(checked, 1)

    def add_batch(self, obs, act, reward, next_obs, terminated) -> None:
        """Store N transitions; if N exceeds the capacity only the newest are kept."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2:
            raise ValueError(f"obs: expected shape (N, {self.obs_dim}), got {obs.shape}")
        n = obs.shape[0]
        values = dict(zip(FIELDS, (obs, act, reward, next_obs, terminated)))
        checked = {k: _checked(k, values[k], s) for k, s in self._shapes(n).items()}
        self._write(checked, n)

    def _write(self, rows: dict[str, np.ndarray], n: int) -> None:
        if n == 0:
            return
        skip = max(0, n - self.capacity)  # rows overwritten within this same batch
        idx = (self._ptr + skip + np.arange(n - skip)) % self.capacity
        for k, arr in rows.items():
            self._data[k][idx] = arr[skip:]
        self._ptr = (self._ptr + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def _filled_indices(self) -> np.ndarray:
        """Row indices of the stored transitions, oldest first."""
        return (self._ptr - self._size + np.arange(self._size)) % self.capacity

    def all(self) -> dict[str, np.ndarray]:
        """Copies of the stored transitions in insertion order (oldest first)."""
        idx = self._filled_indices()
        return {k: v[idx] for k, v in self._data.items()}

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform sample with replacement over the stored transitions."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer")
        idx = rng.integers(0, self._size, size=batch_size)
        return {k: v[idx] for k, v in self._data.items()}

    def save(self, path: str | PathLike) -> None:
        """Write the whole buffer (incl. capacity and ring position) to ``path`` as .npz."""
        with open(path, "wb") as f:
            np.savez(f, ptr=self._ptr, size=self._size, **self._data)

    @classmethod
    def load(cls, path: str | PathLike) -> "ReplayBuffer":
        """Inverse of :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            capacity, obs_dim = z["obs"].shape
            buf = cls(obs_dim, z["act"].shape[1], capacity)
            for k in FIELDS:
                buf._data[k][...] = z[k]
            buf._ptr = int(z["ptr"])
            buf._size = int(z["size"])
        return buf


def _allocate(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder)."""
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def sample_union(
    buffers: Sequence[ReplayBuffer],
    fractions: Sequence[float],
    batch_size: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Sample a batch drawing ``fractions[i]`` of its rows from ``buffers[i]``.

    Row counts are fixed (largest-remainder rounding), rows are grouped by source in
    the order of ``buffers``. Empty buffers are skipped and the fractions of the
    remaining ones renormalised (equal shares if those fractions are all zero).
    """
    if len(buffers) != len(fractions) or not buffers:
        raise ValueError(
            f"need one fraction per buffer, got {len(buffers)} buffers "
            f"and {len(fractions)} fractions"
        )
    weights = np.asarray(fractions, dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"fractions must be finite and >= 0, got {list(fractions)}")
    dims = {(b.obs_dim, b.act_dim) for b in buffers}
    if len(dims) > 1:
        raise ValueError(f"buffers differ in (obs_dim, act_dim): {sorted(dims)}")
    live = [i for i, b in enumerate(buffers) if len(b) > 0]
    if not live:
        raise ValueError("all buffers are empty")
    w = weights[live]
    counts = _allocate(w if w.sum() > 0 else np.ones(len(live)), batch_size)
    parts = [buffers[i].sample(int(c), rng) for i, c in zip(live, counts)]
    return {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
