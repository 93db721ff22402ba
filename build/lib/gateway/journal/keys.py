"""What a blob store accepts as a key and as a derived object's name (gateway.journal.base.BlobStore),
checked the same way by every backend before anything reaches a file name or a bucket."""

from __future__ import annotations

import re

_SHA256 = re.compile(r"[0-9a-f]{64}")
# `64.webp`: a variant and an extension, each a folder or file name part on disk.
_NAME = re.compile(r"([0-9a-z_-]+)\.([0-9a-z]+)")


def is_key(key: str) -> bool:
    """Whether `key` is a lowercase hex sha256 digest."""
    return _SHA256.fullmatch(key) is not None


def check_key(key: str) -> str:
    if not is_key(key):
        raise ValueError(f"not a sha256 hex digest: {key!r}")
    return key


def split_name(name: str) -> tuple[str, str]:
    """A derived object's name as (variant, extension); ValueError for anything else."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not a derived object's name: {name!r}")
    return match[1], match[2]
