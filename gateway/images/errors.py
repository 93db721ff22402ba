from __future__ import annotations


class ImageError(Exception):
    """An image the gateway refuses. `code` is machine-readable; the message says what to fix."""

    def __init__(self, message: str, code: str = "invalid_image") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
