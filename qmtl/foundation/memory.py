"""Allocator setting for long-running services: large blocks go back to the OS.

glibc serves a block above its mmap threshold (128 KiB) from a mapping of its own and
unmaps it on free, but each such free *raises* the threshold to that block's size (up
to 32 MiB).  From then on, large temporaries -- a GC sweep's listing of every queue, the
JSON of a big DAG -- come from the heap, whose pages stay resident while any small,
long-lived object sits above them.  In the soak benchmark the DAG Manager's RSS stepped
up by a few MB at every sweep; with the threshold fixed it grew only with its live
queues (benchmarks/bench_soak.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["LARGE_BLOCK_BYTES", "return_large_blocks_to_os"]

#: glibc's initial threshold; fixing it (even at the same value) stops its adjustment.
LARGE_BLOCK_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>


def return_large_blocks_to_os() -> bool:
    """Fix the mmap threshold; False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
