"""Large blocks stay in their own mappings (returned to the OS on free) once a service
fixed glibc's mmap threshold; without it, one large free moves later ones to the heap."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import ctypes, ctypes.util, sys
from qmtl.foundation.memory import return_large_blocks_to_os

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert return_large_blocks_to_os()
big = bytearray(8 << 20)  # a mapping of its own ...
del big                   # ... whose free raises glibc's threshold to 8 MiB by default
before = libc.mallinfo2().hblkhd
held = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def mapped_bytes_of_a_1_mib_block(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def test_a_large_block_gets_its_own_mapping_once_the_threshold_is_fixed() -> None:
    assert mapped_bytes_of_a_1_mib_block("fixed") >= 1 << 20


def test_without_it_a_large_free_moves_the_next_large_block_to_the_heap() -> None:
    """The behaviour the setting exists for (so the test above can tell them apart)."""
    assert mapped_bytes_of_a_1_mib_block("default") == 0
