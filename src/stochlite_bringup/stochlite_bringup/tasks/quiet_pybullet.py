"""PyBullet without its build-time banner: ``from stochlite_bringup.tasks.quiet_pybullet import pybullet``.

The C extension writes "pybullet build time: ..." from C when it is first imported (to stderr in the PyPI
wheel), past ``sys.stdout``/``sys.stderr``; so the import runs with file descriptors 1 and 2 on /dev/null.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Iterator

C_STANDARD_STREAMS = (1, 2)  # file descriptors of C's stdout and stderr


@contextlib.contextmanager
def c_output_discarded() -> Iterator[None]:
    """Whatever C code writes to stdout or stderr inside the block goes to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in C_STANDARD_STREAMS]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in C_STANDARD_STREAMS:
            os.dup2(devnull, fd)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what C buffered goes to /dev/null too
        for fd, copy in zip(C_STANDARD_STREAMS, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


with c_output_discarded():
    import pybullet  # noqa: E402

__all__ = ["pybullet"]
