"""What the core raises when a request cannot be answered for a reason that is not a bug.

One hierarchy for every layer (the chat path, images, the journal, memory, the keys); it imports
nothing of the project, so any layer may raise it and none has to know HTTP. Each kind carries the
status and `type` OpenAI's API gives that kind of failure, because clients (the OpenAI SDK first)
dispatch on them; gateway.api.errors alone makes responses of them.

Messages are shown to clients, so they never carry paths, URLs or library text; the cause
(`raise ... from exc`) is logged instead.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error the gateway answers with, in OpenAI's shape: `{"error": {message, type, param, code}}`."""

    status: int = 500
    type: str = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    """The body, a field, a content part or an image is not acceptable; `param` names where."""

    status, type = 400, "invalid_request_error"


class Unauthenticated(GatewayError):
    status, type = 401, "authentication_error"


class PermissionDenied(GatewayError):
    status, type = 403, "permission_error"


class NotFound(GatewayError):
    """No such thing for this caller: another tenant's reads exactly like one that does not exist."""

    status, type = 404, "not_found_error"


class TooLarge(GatewayError):
    status, type = 413, "invalid_request_error"


class UpstreamFailed(GatewayError):
    """The model server failed, or the connection to it broke."""

    status, type = 502, "upstream_error"


class Unavailable(GatewayError):
    """A backend cannot answer now; retrying later may work. `retry_after_s`, when known, tells the
    client when (the OpenAI SDK honours it)."""

    status, type = 503, "upstream_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None,
                 param: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after_s = retry_after_s


class BackendUnavailable(Unavailable):
    """A backing service of the memory path (the vector store, an embedding model) failed. Its cause is
    logged where this becomes a response; the client learns only what was unavailable."""

    def __init__(self, what: str, *, code: str = "memory_unavailable") -> None:
        super().__init__(f"{what} is unavailable right now; retry shortly", code=code)
        self.what = what


class UpstreamTimeout(GatewayError):
    status, type = 504, "upstream_timeout"


class Relayed(GatewayError):
    """The model server's own error answer, with its status and type as it sent them."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | int | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        if type:
            self.type = type


# The `type` OpenAI's API gives each status, for errors known only by their status (the framework's own).
TYPES: dict[int, str] = {kind.status: kind.type for kind in (
    InvalidRequest, Unauthenticated, PermissionDenied, NotFound, UpstreamFailed, Unavailable, UpstreamTimeout)}
