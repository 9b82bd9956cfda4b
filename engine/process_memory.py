"""glibc's allocator told to hand freed memory back, for the process that syncs.

A sync's large buffers (a page of wide invoices is ~7 MB, its objects ~70 KB each) are
allocated by many threads (24 fetchers a stream, a writer a stream) and freed by others.
By default glibc gives each thread its own arena (up to 8 a core) and, once a large block
has been freed, raises the size from which blocks are mapped on their own up to 32 MB: the
freed memory then stays in the arenas, split up, and the process keeps it. On a first sync
of invoices with 60 lines that was ~100 MB of the peak (MALLOC_ARENA_MAX=2 and a fixed
MALLOC_MMAP_THRESHOLD_ gave the same: benchmarks/README.md, "Peak memory by account shape").
DuckDB and Arrow use allocators of their own and are not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_MMAP_THRESHOLD = -3  # malloc.h: blocks this large or larger get a mapping of their own
_M_ARENA_MAX = -8  # malloc.h: at most this many arenas
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, now kept fixed
ARENA_MAX = 2

_done = threading.Event()


def hand_back_freed_memory() -> bool:
    """Set glibc's allocator once per process; False where the C library is not glibc (the
    defaults then stay, nothing fails)."""
    if _done.is_set():
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_ARENA_MAX, ARENA_MAX)
    _done.set()
    return True
