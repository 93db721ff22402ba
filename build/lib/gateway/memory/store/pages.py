"""Hand the kernel back the pages a process has mapped from files under one directory.

Qdrant's engine keeps vectors, payload and its WAL in memory-mapped files. Pages it writes or reads
stay mapped into the process, so they count in its RSS for as long as the shard is open, even with
the vectors configured "on disk": an embedded store that has taken N exchanges shows N x ~7 KB more
RSS, although those pages are only page cache the kernel could drop. `release_mapped` asks the kernel
to take them back (`MADV_PAGEOUT`): the process's RSS falls, and the data stays in the file (a page
read again is faulted back in).

MADV_PAGEOUT, not MADV_DONTNEED: it only ever evicts, it never changes what memory holds. So if the
engine unmapped a range between reading /proc/self/maps and the call, and something else was mapped
there, nothing is lost (DONTNEED would zero a private mapping). Linux 5.4+; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("visionrag.memory")

MADV_PAGEOUT = 21

_madvise: Callable[[int, int, int], int] | None = None
_unsupported = not sys.platform.startswith("linux")
_malloc_trim: Callable[[int], int] | bool | None = None


def _libc_madvise() -> Callable[[int, int, int], int] | None:
    global _madvise, _unsupported
    if _madvise is None and not _unsupported:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
            _madvise = fn
        except (OSError, AttributeError):
            _unsupported = True
    return _madvise


def mapped_files(root: Path, keep: Callable[[str], bool] = lambda _: False) -> list[tuple[int, int, str]]:
    """(start, end, path) of this process's shared file mappings under `root`, less those `keep` names."""
    prefix = str(root.resolve()) + "/"
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                # Only shared mappings: their pages belong to the file, so evicting them loses nothing.
                if len(parts) < 6 or len(parts[1]) < 4 or parts[1][3] != "s":
                    continue
                path = parts[5].rstrip("\n")
                if not path.startswith(prefix) or keep(path):
                    continue
                start, end = (int(x, 16) for x in parts[0].split("-"))
                found.append((start, end, path))
    except OSError:
        return []
    return found


def release_mapped(root: Path, keep: Callable[[str], bool] = lambda _: False) -> int:
    """Evict the resident pages of shared file mappings under `root` (except `keep`'s). Returns how
    many mappings were advised; 0 where the platform cannot."""
    madvise = _libc_madvise()
    if madvise is None:
        return 0
    advised = 0
    for start, end, _ in mapped_files(root, keep):
        if madvise(start, end - start, MADV_PAGEOUT) == 0:
            advised += 1
        elif ctypes.get_errno() == 22:  # EINVAL: a kernel without MADV_PAGEOUT (< 5.4)
            global _unsupported
            _unsupported = True
            log.info("this kernel cannot page out the vector store's mapped files; its RSS will include them")
            return advised
    return advised


def trim_heap() -> None:
    """Return the free memory glibc's arenas hold to the kernel (`malloc_trim`). The engine's
    in-RAM indexes of not-yet-indexed points grow by reallocation, leaving freed blocks behind in
    whichever thread's arena did the write; without a trim they stay in the process's RSS."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _malloc_trim = libc.malloc_trim
            _malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def resident_bytes(root: Path) -> int:
    """Bytes of files under `root` resident in this process (shared and private mappings)."""
    prefix = str(root.resolve()) + "/"
    total = 0
    inside = False
    try:
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                head = line.split(maxsplit=5)
                if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    inside = len(head) == 6 and head[5].rstrip("\n").startswith(prefix)
                elif inside and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total
