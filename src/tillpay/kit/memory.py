"""Process-wide memory settings for long-running tillpay processes."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Final

# glibc's mallopt parameter (malloc.h): allocations at least this large get their own
# mapping, returned to the system when freed.
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 1024 * 1024


@functools.cache
def return_large_blocks_to_the_system() -> bool:
    """Make glibc give freed large blocks back at once (True when it applied).

    Each Argon2id hash allocates its memory cost (19 MiB) in a worker thread. glibc raises
    its mmap threshold after the first such block is freed, so later blocks come from the
    threads' heaps and stay resident: about 19 MiB per thread that ever hashed. A fixed
    threshold keeps them mmapped, so RSS drops back after every hash. No-op off glibc.

    Process-wide, so applied once per process: finding libc runs ``ldconfig`` (a
    subprocess, ~5 ms), which every app start in one process would otherwise repeat.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
