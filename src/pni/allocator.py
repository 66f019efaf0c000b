"""Large attack batches without a page-fault storm (glibc on Linux).

ZOO scores ``2 * coords + 1`` queries per image in one forward pass, and the honest
protocol's votes repeat a batch ten times: a ResNet-20 activation then takes 100-200 MB.
glibc serves every block above its mmap threshold (at most 32 MB) with fresh pages that the
kernel zero-fills on first touch, and unmaps it when it is freed, so each such forward pass
pays its whole working set in page faults again: measured (``benchmarks/allocator.py``),
ZOO on CPU spent twice as long in the kernel as in computing. ``keep_freed_memory`` raises
the mmap and trim thresholds so that freed blocks stay in the heap and are reused; the
``pni`` command calls it at start. The process then keeps its peak memory until it ends.
Nothing changes where the environment already sets glibc's malloc tunables, where
``PNI_MALLOC=default``, or off glibc."""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP = 2**31 - 1          # the largest value mallopt takes (an int): every block from the heap
TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Keeps freed memory in the heap for reuse (glibc ``mallopt``); returns whether it did."""
    if not sys.platform.startswith("linux") or os.environ.get("PNI_MALLOC") == "default":
        return False
    if any(name in os.environ for name in TUNABLES):  # the user's own malloc settings win
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols to reach, or no mallopt (not glibc)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
