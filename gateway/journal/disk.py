"""`DiskBlobStore`, the BlobStore (gateway.journal.base) in a local folder: one file per image, named by its
sha256 under a folder of its first two hex digits."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DiskBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root) + os.sep
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` unless already present; return its sha256.

        Written to a temporary name and renamed, so a reader (or a restart after a crash)
        never sees a half-written image under its final name.
        """
        digest = sha256 or hashlib.sha256(data).hexdigest()
        if not _SHA256.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        # A string, not a Path: this check runs for every image of every chat, mostly finding it stored.
        if os.path.exists(f"{self._root}{digest[:2]}{os.sep}{digest}"):
            return digest
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
        return digest

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def __contains__(self, sha256: str) -> bool:
        try:
            return self.path(sha256).exists()
        except ValueError:
            return False

    def delete(self, sha256: str) -> bool:
        """Remove the image's file (forgetting); False if it was not there."""
        try:
            self.path(sha256).unlink()
            return True
        except (FileNotFoundError, ValueError):
            return False
