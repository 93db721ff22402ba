"""What services raise when a request cannot be answered for a reason that is not a bug.

Services know nothing of HTTP: gateway.errors maps these (and the images' and memory's own errors) to
OpenAI-shaped responses, in one place. Messages here are shown to clients, so they never carry paths,
URLs or library text; the cause (`raise ... from exc`) is logged instead.
"""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class NotFound(ServiceError):
    """No such thing for this caller: another tenant's reads exactly like one that does not exist."""


class Unavailable(ServiceError):
    """A backing service (the vector store, the embedding model) failed; retrying later may work."""

    def __init__(self, what: str, *, code: str = "memory_unavailable") -> None:
        super().__init__(f"{what} is unavailable right now; retry shortly", code=code)
        self.what = what
