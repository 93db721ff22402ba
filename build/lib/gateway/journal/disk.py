"""`DiskBlobStore`, the BlobStore (gateway.journal.base) in local folders: one file per image, named by its
sha256 under a folder of its first two hex digits; what is derived from an image (`64.webp`) in a second
folder, as `<derived>/64/<ab>/<sha256>.webp`."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from gateway.journal.base import BlobStream
from gateway.journal.keys import check_key, is_key, split_name

# What a streamed read hands on at a time: few thread hops for a large image, little held per reader.
CHUNK = 256 * 1024


class DiskBlobStore:
    def __init__(self, root: Path, derived: Path | None = None) -> None:
        """Images under `root`; derived objects under `derived`, by default the folder `thumbnails` beside
        `root` (the data dir's layout)."""
        self.root = root
        self.derived = derived if derived is not None else root.parent / "thumbnails"
        self._root = str(root) + os.sep
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_key(sha256)
        return self.root / sha256[:2] / sha256

    def derived_path(self, sha256: str, name: str) -> Path:
        check_key(sha256)
        variant, extension = split_name(name)
        return self.derived / variant / sha256[:2] / f"{sha256}.{extension}"

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` unless already present; return its sha256."""
        digest = check_key(sha256 or hashlib.sha256(data).hexdigest())
        # A string, not a Path: this check runs for every image of every chat, mostly finding it stored.
        if os.path.exists(f"{self._root}{digest[:2]}{os.sep}{digest}"):
            return digest
        _write(self.path(digest), data)
        return digest

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def open(self, sha256: str) -> BlobStream | None:
        try:
            handle = open(self.path(sha256), "rb")  # noqa: SIM115 - closed by the stream
        except (FileNotFoundError, ValueError):
            return None
        return BlobStream(os.fstat(handle.fileno()).st_size, iter(lambda: handle.read(CHUNK), b""), handle.close)

    def __contains__(self, sha256: str) -> bool:
        return is_key(sha256) and self.path(sha256).exists()

    def delete(self, sha256: str) -> bool:
        """Remove the image's file (forgetting); False if it was not there."""
        try:
            self.path(sha256).unlink()
            return True
        except (FileNotFoundError, ValueError):
            return False

    def put_derived(self, sha256: str, name: str, data: bytes) -> None:
        _write(self.derived_path(sha256, name), data)

    def get_derived(self, sha256: str, name: str) -> bytes | None:
        if not is_key(sha256):
            return None
        try:
            return self.derived_path(sha256, name).read_bytes()
        except FileNotFoundError:
            return None

    def delete_derived(self, sha256: str) -> None:
        """Every file derived from the image, and what a write killed half-way left beside them."""
        if not is_key(sha256) or not self.derived.is_dir():
            return
        for variant in self.derived.iterdir():
            folder = variant / sha256[:2]
            if folder.is_dir():
                for path in [*folder.glob(f"{sha256}.*"), *folder.glob(f".{sha256}.*.tmp")]:
                    path.unlink(missing_ok=True)


def _write(target: Path, data: bytes) -> None:
    # Under a temporary name of this thread's own, then renamed: a reader (or a restart after a crash)
    # never sees half a file under the final name, and two threads writing the same file do not share one.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)
