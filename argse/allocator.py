"""How the C allocator of this process keeps the memory that numpy frees (glibc only).

glibc's malloc maps a block above its mmap threshold (128 KiB at first, raised as such blocks are freed) straight
from the kernel and unmaps it when freed, and returns the free top of its heap once that passes the trim threshold.
The rule search makes and frees a few arrays of about half a MiB for every block of candidate rules
(selective.BLOCK), so their pages were handed back and faulted in again, block after block: six sweeps of one
100-class source took 3.3 million page faults and 6 s in the kernel (docs/performance_notes.md). With fixed
thresholds above those sizes the freed memory is reused instead.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameters (malloc.h) and the values argse sets: the largest mmap threshold glibc accepts on
# 64-bit systems, so every block of the search and of the views (evaluation.VIEW_ROWS rows) comes from the heap,
# and a trim threshold that keeps up to 64 MiB of freed heap in the process.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Fix glibc's thresholds for this process and the processes it forks later; whether they were set (False
    off glibc, where nothing changes)."""
    if not glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Setting either threshold stops glibc adjusting the other, so both are set, the mmap one first.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or a libc without that name
        return False
