"""Hand the memory of large decodes back to the OS (glibc only; elsewhere these do nothing).

glibc raises its mmap threshold each time a large mmapped block is freed, so after the first big
image Pillow's 16 MB blocks come from the thread arenas instead, and freed arena memory stays in
the process: the gateway kept gigabytes after a few large images. A fixed threshold keeps large
blocks mmapped (each free returns it); `trim` releases what the arenas still hold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

_M_MMAP_THRESHOLD = -3
_lock = threading.Lock()
_configured = False


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def mmap_large_blocks(threshold: int = 1 << 20) -> None:
    """Once per process; an operator's own MALLOC_MMAP_THRESHOLD_ takes precedence."""
    global _configured
    with _lock:
        if _configured or "MALLOC_MMAP_THRESHOLD_" in os.environ:
            _configured = True
            return
        libc = _libc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, threshold)
        _configured = True


def trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
