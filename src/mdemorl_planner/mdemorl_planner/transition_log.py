"""``TransitionLog``: D_ENV on disk, appended batch by batch and never rewritten, so a run can resume.

Layout of the directory: ``meta.json`` (dims and field order, written once, atomically) and
``transitions.f32``: one fixed-size little-endian float32 record per transition, the fields of
``replay_buffer.FIELDS`` side by side (obs, act, reward, next_obs, terminated). Each :meth:`append`
writes whole records, flushes and fsyncs, so after a crash (even SIGKILL mid-write) the file holds every
appended batch but possibly a torn last record; :meth:`load` ignores that tail and opening the log for
appending cuts it off, so records stay aligned.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .replay_buffer import FIELDS

RECORDS_FILE = "transitions.f32"
META_FILE = "meta.json"


class TransitionLog:
    """Append-only store of real transitions in ``directory`` for tasks of ``obs_dim`` and ``act_dim``."""

    def __init__(self, directory: str | os.PathLike, obs_dim: int, act_dim: int) -> None:
        self.directory = Path(directory)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.widths = {"obs": obs_dim, "act": act_dim, "reward": 1, "next_obs": obs_dim, "terminated": 1}
        self.record_floats = sum(self.widths.values())
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"obs_dim": obs_dim, "act_dim": act_dim, "fields": list(FIELDS), "dtype": "<f4"}
        meta_path = self.directory / META_FILE
        if meta_path.is_file():
            found = json.loads(meta_path.read_text())
            if found != meta:
                raise ValueError(f"{meta_path} describes {found}, not this task's {meta}: use another run "
                                 "directory, or start afresh without resume")
        else:
            tmp = meta_path.with_name(META_FILE + ".tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, meta_path)
        self.path = self.directory / RECORDS_FILE
        self.path.touch()
        record_bytes = 4 * self.record_floats
        whole = self.path.stat().st_size // record_bytes * record_bytes
        if self.path.stat().st_size != whole:  # a torn record from a crash mid-write
            os.truncate(self.path, whole)

    def __len__(self) -> int:
        return self.path.stat().st_size // (4 * self.record_floats)

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Write the batch's transitions at the end, durably (flush and fsync) before returning."""
        n = len(batch["reward"])
        columns = [np.asarray(batch[k], dtype="<f4").reshape(n, self.widths[k]) for k in FIELDS]
        records = np.concatenate(columns, axis=1)
        with open(self.path, "ab") as stream:
            stream.write(records.tobytes())
            stream.flush()
            os.fsync(stream.fileno())

    def load(self) -> dict[str, np.ndarray]:
        """Every whole record, as the arrays of ``FIELDS`` (reward and terminated flat)."""
        records = np.fromfile(self.path, dtype="<f4")
        records = records[: len(records) // self.record_floats * self.record_floats].reshape(-1, self.record_floats)
        data, start = {}, 0
        for key in FIELDS:
            width = self.widths[key]
            column = records[:, start:start + width]
            data[key] = column[:, 0].copy() if key in ("reward", "terminated") else column.copy()
            start += width
        return data

    def clear(self) -> None:
        """Drop every record (a fresh run in the same directory)."""
        os.truncate(self.path, 0)


def read_transition_log(directory: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """The transitions of the log in ``directory`` (dims from its meta.json), or None if there is none."""
    meta_path = Path(directory) / META_FILE
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    return TransitionLog(directory, meta["obs_dim"], meta["act_dim"]).load()
