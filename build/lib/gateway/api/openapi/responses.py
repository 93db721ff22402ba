"""What a route declares in `responses=`: the errors it can answer with, and answers FastAPI cannot derive.

    @router.get("/exchanges/{exchange_id}", responses=errors(F.EXCHANGE_NOT_FOUND))

The errors that follow from a route's dependencies (its key, the memory, its body) are added to
these by gateway.api.openapi.document, in the same shape (`merge_errors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.api.openapi.failures import Failure
from gateway.api.openapi.schemas import EVENT_STREAM, EXCHANGE_ID_HEADER, ref

# The content type an image response declares; the document lists the configured image formats in its place.
ANY_IMAGE = "image/*"

_STATUS_TEXT = {
    400: "Invalid request: the body, a field, a content part or an image. `param` names the field.",
    401: "No key or an unknown key (only once keys are configured).",
    403: "The key is of the wrong kind for this route.",
    404: "Not found.",
    413: "The body is over `VISIONRAG_MAX_BODY_BYTES` (refused before it is read further).",
    502: "The model server failed or could not be reached.",
    503: "Unavailable for now.",
    504: "The model server did not answer within `VISIONRAG_UPSTREAM_READ_TIMEOUT_S`.",
}

Examples = dict[str, dict[str, Any]]


def errors(*failures: Failure) -> dict[int | str, dict[str, Any]]:
    """`responses=` for `failures`: one response per status, each failure a named example of it."""
    by_status: dict[int, list[Failure]] = {}
    for failure in failures:
        by_status.setdefault(failure.status, []).append(failure)
    return {status: error_response(status, _examples(group)) for status, group in by_status.items()}


def merge_errors(status: int, first: dict[str, Any], then: dict[str, Any] | None) -> dict[str, Any]:
    """One error response with the examples of `first` and, after them, those of `then` (None: none)."""
    merged = dict(_examples_of(first))
    merged.update((name, e) for name, e in _examples_of(then or {}).items() if name not in merged)
    return {**(then or {}), **error_response(status, merged)}


def _examples(failures: Iterable[Failure]) -> Examples:
    found: Examples = {}
    for f in failures:  # one example per name, the first
        found.setdefault(f.name, {"summary": f.message, "value": f.body()})
    return found


def _examples_of(response: dict[str, Any]) -> Examples:
    return response.get("content", {}).get("application/json", {}).get("examples", {})


def error_response(status: int, found: Examples) -> dict[str, Any]:
    """The response for one status: its description names every code its examples carry."""
    codes = [e["value"]["error"].get("code") for e in found.values()]
    text = _STATUS_TEXT.get(status, "Error.")
    named = ", ".join(dict.fromkeys(f"`{code}`" for code in codes if isinstance(code, str)))
    if named:
        text += f" Codes: {named}."
    if any(not isinstance(code, str) for code in codes):
        text += " The model server's own answers with this status are relayed as it sent them."
    return {
        "description": text,
        "content": {"application/json": {"schema": ref("ErrorResponse"), "examples": found}},
    }


def completion_or_stream(component: str) -> dict[int, dict[str, Any]]:
    """The 200 of a route that answers `component` as JSON, or its event stream with `stream: true`."""
    return {200: {
        "description": "The completion (`stream` false) or its event stream (`stream` true).",
        "headers": {"x-visionrag-exchange-id": EXCHANGE_ID_HEADER},
        "content": {"application/json": {"schema": ref(component)},
                    "text/event-stream": EVENT_STREAM},
    }}


def image_bytes() -> dict[int, dict[str, Any]]:
    """The 200 of a route that answers an image's bytes (with `response_class=Response`, so no JSON)."""
    return {200: {
        "description": "The image's bytes exactly as the model saw them, with their own content type.",
        "headers": {
            "Cache-Control": {"schema": {"type": "string"}, "description": "`private, no-cache`: access is "
                              "decided at each request (per tenant, and never again once forgotten), so a "
                              "copy is revalidated every time."},
            "Vary": {"schema": {"type": "string", "const": "Authorization"}},
            "ETag": {"schema": {"type": "string"}, "description": "The image's sha256 (a thumbnail's: weak, "
                     "with its size): send it back as `If-None-Match` for a 304 without the bytes."},
            "X-Content-Type-Options": {"schema": {"type": "string", "const": "nosniff"}},
        },
        "content": {ANY_IMAGE: {"schema": {"type": "string", "format": "binary"}}},
    }}
