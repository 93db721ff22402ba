"""Vectors computed to retrieve for a chat, kept for that chat's own ingest a moment later.

Retrieval embeds the question and the current image before the model answers; the exchange reaches
the ingest worker after it answers, with the same question text and the same image bytes. The worker
takes those vectors from here instead of running the models on them again. Each entry is taken at most
once (ingest pops it).

Only an optimization, so it is bounded every way a client could stretch it:
- keyed by a digest of the text (images by their sha256): a question of any length costs a few bytes
  of key, and the text itself is not kept alive here;
- bounded in bytes, the oldest entries dropped first;
- an entry not taken within `ttl_s` expires, so a chat whose exchange is never recorded (an upstream
  error, a client gone) leaves nothing behind. An ingest that comes later than that (a long backlog)
  embeds again, as it would without reuse.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

# Bookkeeping per entry beyond the vector's own bytes (key, digest, dict node, array header): what a
# flood of entries costs is counted too.
ENTRY_OVERHEAD_BYTES = 256


def text_key(text: str) -> str:
    # surrogatepass: a lone surrogate in a client's text still has a digest.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class VectorReuse:
    def __init__(self, max_bytes: int = 16 << 20, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`max_bytes` 0 keeps nothing."""
        self.max_bytes = max(0, max_bytes)
        self.ttl_s = ttl_s
        self.clock = clock
        # (encoder, text digest) or ("image", sha256) -> (expiry, vector), oldest first.
        self._entries: OrderedDict[tuple[str, str], tuple[float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.reused = 0

    def put_text(self, text: str, vector: np.ndarray, encoder: str = "clip") -> None:
        self._put((encoder, text_key(text)), vector)

    def put_image(self, sha256: str, vector: np.ndarray) -> None:
        self._put(("image", sha256), vector)

    def take_text(self, text: str, encoder: str = "clip") -> np.ndarray | None:
        return self._take((encoder, text_key(text)))

    def take_image(self, sha256: str) -> np.ndarray | None:
        return self._take(("image", sha256))

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _put(self, key: tuple[str, str], vector: np.ndarray) -> None:
        # A copy: a row of a batch's matrix would keep the whole matrix alive.
        vector = np.array(vector, dtype=np.float32)
        size = vector.nbytes + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        with self._lock:
            self._pop(key)
            self._entries[key] = (self.clock() + self.ttl_s, vector)
            self.nbytes += size
            self._expire()
            while self.nbytes > self.max_bytes:
                self._pop(next(iter(self._entries)))

    def _take(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            self._expire()
            vector = self._pop(key)
            if vector is not None:
                self.reused += 1
            return vector

    def _pop(self, key: tuple[str, str]) -> np.ndarray | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.nbytes -= entry[1].nbytes + ENTRY_OVERHEAD_BYTES
        return entry[1]

    def _expire(self) -> None:
        # Every entry lives ttl_s from its put, so insertion order is expiry order.
        now = self.clock()
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                return
            self._pop(key)
