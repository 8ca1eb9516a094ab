"""How the C allocator of this process keeps the memory that numpy frees (glibc only).

glibc's malloc maps a block above its mmap threshold (128 KiB at first, raised as such blocks are freed) straight
from the kernel and unmaps it when freed, and returns the free top of its heap once that passes the trim threshold.
The rule search makes and frees a few arrays of about half a MiB for every block of candidate rules
(selective.BLOCK), so their pages were handed back and faulted in again, block after block (docs/performance_notes.md,
"The allocator keeps freed memory"). With fixed thresholds above those sizes the freed memory is reused instead.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameters (malloc.h) and the values argse sets: the mmap threshold at the most that glibc's own
# adjustment ever raises it to on 64-bit systems (and the most older versions accept), so every block of the search
# and of the views (evaluation.VIEW_ROWS rows) comes from the heap; a trim threshold that keeps up to 64 MiB of freed
# heap in the process.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
# Where a user tunes glibc's malloc: then argse leaves it as the user set it.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Fix glibc's thresholds for this process and the processes it forks later; whether they were set (False off
    glibc or where the user tuned malloc, and nothing changes). An allocator preloaded in glibc's place (jemalloc,
    tcmalloc) ignores the call. argse calls it only in the processes it forks for the rule search
    (sweep.source_pool), which end with the search, never in a process that goes on to other work."""
    if not is_glibc() or any(name in os.environ for name in USER_SETTINGS):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Setting either threshold stops glibc adjusting the other, so both are set, the mmap one first (if glibc
    # refuses it, the trim threshold is left alone too).
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (the C library that mallopt's parameters above belong to)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or a libc without that name (musl: None)
        return False
