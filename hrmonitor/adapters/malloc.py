"""glibc's malloc, told to return large buffers to the kernel when they are freed.

glibc serves a request of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at
first) with a mapping of its own, unmapped when freed. But the threshold is
dynamic: freeing such a mapping raises it to that size (up to 32 MB), so after
the daemon's first 1 MB message every buffer below 1 MB (the next message's,
classification's text) comes from the heap and stays resident once freed. From
a baseline warmed only with small messages that was about 1 MB more resident
for the first large message (benchmarks/hostile_memory.py). Setting the
threshold fixes it, so large buffers are always mapped and always given back.

The cost is a ``mmap``/``munmap`` pair per buffer of 128 KiB or more: a
message that size or larger; the relay moves bodies in 64 KiB slices and
pieces, and small messages never reach it (``benchmarks/relay.py``: see
benchmarks/README.md).

glibc only (other C libraries have their own policies); an operator's own
``MALLOC_MMAP_THRESHOLD_`` or ``glibc.malloc.mmap_threshold`` tunable wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where it is not glibc or
    the operator set the threshold already."""
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own symbol: musl has a mallopt too)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, threshold) != 1:
        log.warning("glibc refused an mmap threshold of %d bytes", threshold)
        return False
    return True
