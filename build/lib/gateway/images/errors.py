from __future__ import annotations

from gateway.errors import InvalidRequest


class ImageError(InvalidRequest):
    """An image the gateway refuses. `code` is machine-readable; the message says what to fix.

    `param` names the request field the image came from, set by whoever knows it (not this package).
    """

    def __init__(self, message: str, code: str = "invalid_image", *, param: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
