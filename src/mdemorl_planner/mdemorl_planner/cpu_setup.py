"""Process-wide CPU settings of the processes that train: torch's thread count and glibc's malloc thresholds."""

import ctypes

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 << 20  # the largest value glibc accepts on 64-bit machines
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel at once.

    By default glibc serves blocks from 128 KiB up (a threshold it raises as such blocks are freed) with fresh
    mmaps, and returns the heap's free top to the kernel beyond twice that threshold. A loop that allocates and
    frees the same few megabytes (a SAC update's activations, the planner's rollout chunks) then page-faults on
    the same memory in every iteration: about 190 faults per SAC update and 10,000 per planner batch here
    (2026-12-05). With blocks up to 32 MiB taken from the heap and up to 256 MiB of its free top kept, both are
    near zero. Returns False where the C library has no ``mallopt`` (it is not glibc) or refuses a value.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(mmap_set and trim_set)


def configure_cpu(threads: int) -> None:
    """``threads`` torch intra-op threads (0 keeps torch's default), and :func:`keep_freed_memory`."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
