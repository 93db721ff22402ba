"""Vectors computed to retrieve for a chat, kept for that chat's own ingest a moment later.

Retrieval embeds the question and the current image before the model answers; the exchange reaches
the ingest worker after it answers, with the same question text and the same image bytes. The worker
takes those vectors from here instead of running CLIP on them again. Each entry is taken at most once
(ingest pops it), and the oldest are dropped beyond `max_entries`, so a chat that is never ingested
(an upstream error) costs a bounded amount of memory, never a leak.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class VectorReuse:
    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max(0, max_entries)
        # Keyed by (encoder, text) or ("image", sha256): the same text has one vector per text encoder.
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.reused = 0

    def put_text(self, text: str, vector: np.ndarray, encoder: str = "clip") -> None:
        self._put((encoder, text), vector)

    def put_image(self, sha256: str, vector: np.ndarray) -> None:
        self._put(("image", sha256), vector)

    def take_text(self, text: str, encoder: str = "clip") -> np.ndarray | None:
        return self._take((encoder, text))

    def take_image(self, sha256: str) -> np.ndarray | None:
        return self._take(("image", sha256))

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, key: tuple[str, str], vector: np.ndarray) -> None:
        if not self.max_entries:
            return
        with self._lock:
            self._entries[key] = vector
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _take(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.pop(key, None)
            if vector is not None:
                self.reused += 1
            return vector
