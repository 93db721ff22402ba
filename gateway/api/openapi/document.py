"""Make FastAPI's generated OpenAPI document say what the gateway really does.

FastAPI documents a 422 the gateway never sends (its validation errors are OpenAI-shaped 400s),
knows nothing of the API keys (they are checked in dependencies that read the header themselves),
and has no request body for routes that read their JSON after authentication. This module rewrites
the generated document in place: the keys as bearer schemes, per route the errors it can give with
example bodies, the request bodies, and `/images` as image bytes.

Who may call a route is read from its dependencies (gateway.auth); what a route talks to (the model
server, the memory) from the table below and from its dependency on the memory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, routing
from PIL import Image
from pydantic import BaseModel

from gateway.api.body import openapi_body
from gateway.api.deps import get_memory, identify_caller, require_admin, require_tenant
from gateway.api.openapi import failures as F
from gateway.api.openapi import schemas
from gateway.memory.protocol import ForgetRequest, SearchRequest
from gateway.proxy.protocol import PredictRequest

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` with a tenant's key (`VISIONRAG_API_KEYS`); the key's "
                       "tenant scopes what the caller sees. With no tenant keys configured the gateway is "
                       "open: the key is optional and every caller is the `default` tenant.",
    },
    "OperatorKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` with an operator key (`VISIONRAG_ADMIN_KEYS`), for the "
                       "cross-tenant views. With no key of either kind configured these are open too; with "
                       "tenant keys but no operator key they are closed.",
    },
}

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


@dataclass(frozen=True)
class RouteDoc:
    """What the generated document cannot know about one route."""

    body: dict[str, Any] | type[BaseModel] | None = None  # used only when FastAPI generated no body
    responses: dict[str, Any] = field(default_factory=dict)  # replace the generated ones of that status
    upstream: bool = False  # talks to the model server
    failures: tuple[F.Failure, ...] = ()
    optional_operator_key: bool = False
    description: str | None = None  # for routes whose handler has no docstring


def _json_and_stream(schema_name: str) -> dict[str, Any]:
    return {"200": {
        "description": "The completion (`stream` false) or its event stream (`stream` true).",
        "headers": {"x-visionrag-exchange-id": schemas.EXCHANGE_ID_HEADER},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}},
                    "text/event-stream": schemas.EVENT_STREAM},
    }}


_RELAYED = (F.RELAYED_BAD_REQUEST, F.RELAYED_NOT_FOUND)

ROUTES: dict[tuple[str, str], RouteDoc] = {
    ("post", "/v1/chat/completions"): RouteDoc(
        body={"$ref": "#/components/schemas/ChatCompletionRequest"}, responses=_json_and_stream("ChatCompletion"),
        upstream=True, failures=(*F.MESSAGES, *_RELAYED),
        description="OpenAI chat completions, streamed or not. Every image is fetched or decoded and checked "
                    "by the gateway and sent on as a `data:` URL; the exchange is recorded before the answer "
                    "ends, and `x-visionrag-exchange-id` names it."),
    ("post", "/v1/completions"): RouteDoc(
        body={"$ref": "#/components/schemas/CompletionRequest"}, responses=_json_and_stream("Completion"),
        upstream=True, failures=(F.PROMPT, F.UNSUPPORTED_PARAMETER, *_RELAYED),
        description="Text completions, streamed or not, recorded like chats."),
    ("post", "/tokenize"): RouteDoc(
        body={"$ref": "#/components/schemas/TokenizeRequest"}, upstream=True, failures=(*F.MESSAGES, *_RELAYED),
        description="vLLM's tokenizer, not recorded; `messages` pass the same content and image checks as a chat."),
    ("post", "/detokenize"): RouteDoc(
        body={"$ref": "#/components/schemas/TokenizeRequest"}, upstream=True,
        failures=(F.UNSUPPORTED_PARAMETER, *_RELAYED), description="vLLM's detokenizer, not recorded."),
    ("get", "/v1/models"): RouteDoc(upstream=True, description="The models the upstream serves."),
    ("post", "/predict"): RouteDoc(
        body=PredictRequest, upstream=True, failures=(*F.PREDICT, *_RELAYED),
        description="The original service's request: one image and a question, answered as `{\"output\"}` "
                    "and recorded like a chat."),
    ("post", "/search"): RouteDoc(
        body=SearchRequest, failures=(*F.SEARCH, F.memory_unavailable("search")),
        description="Past exchanges of the caller's tenant, most similar first, by text or by image."),
    ("get", "/exchanges"): RouteDoc(
        failures=(F.Failure(400, "invalid_cursor", "`cursor` is not one this gateway returned", "invalid_cursor",
                            param="cursor"),),
        description="The caller's tenant's exchanges, most recent first, a page at a time: pass `next_cursor` "
                    "back as `cursor` for the next (older) page."),
    ("get", "/exchanges/{exchange_id}"): RouteDoc(
        failures=(F.EXCHANGE_NOT_FOUND,),
        description="One recorded exchange of the caller's tenant (another tenant's answers 404)."),
    ("delete", "/exchanges/{exchange_id}"): RouteDoc(
        failures=(F.EXCHANGE_NOT_FOUND,),
        description="Forget one exchange of the caller's tenant everywhere: its text, its vectors, and each "
                    "image no other exchange uses (another tenant's id answers 404). The 204 comes as soon as "
                    "nothing reads it any more; its vectors and files are deleted right after, retried in the "
                    "background while the vector store refuses."),
    ("post", "/exchanges/forget"): RouteDoc(
        body=ForgetRequest,
        failures=(F.Failure(400, "invalid_value", "give `user`, `before`, or both", "invalid_value"),),
        description="Forget every exchange of the caller's tenant of one `user` and/or older than `before`, "
                    "as DELETE /exchanges/{exchange_id} does each."),
    ("get", "/images/{sha256}"): RouteDoc(
        failures=(F.IMAGE_NOT_FOUND,),
        responses={"304": {"description": "Not modified: `If-None-Match` names the ETag and the caller may "
                                          "still see the image (a forgotten one answers 404)."}},
        description="An image the model saw, by its sha256, if one of the caller's tenant's exchanges carries "
                    "it (else 404). With `size`, a WebP thumbnail (made once, cached) instead of the original."),
    ("get", "/ready"): RouteDoc(optional_operator_key=True, responses={
        "200": {"description": "The gateway serves; `upstreams` says how many model server replicas answer "
                               "(chats answer 503 with Retry-After while none does).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
    }),
}

COMPONENTS = {
    "ErrorResponse": schemas.ERROR_RESPONSE,
    "ChatCompletionRequest": schemas.CHAT_REQUEST,
    "CompletionRequest": schemas.COMPLETION_REQUEST,
    "TokenizeRequest": schemas.TOKENIZE_REQUEST,
    "ChatCompletion": schemas.CHAT_COMPLETION,
    "Completion": schemas.COMPLETION,
    "Readiness": schemas.READINESS,
}


def describe(document: dict[str, Any], app: FastAPI, *, max_body_bytes: int,
             image_formats: Iterable[str]) -> dict[str, Any]:
    """Rewrite `document` (FastAPI's, for `app`) in place and return it."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(COMPONENTS)
    components["securitySchemes"] = SECURITY_SCHEMES
    body_failures = F.body_failures(max_body_bytes)
    image_types = sorted({Image.MIME.get(fmt.upper(), f"image/{fmt.lower()}") for fmt in image_formats})

    for method, path, route in _routes(app):
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        doc = ROUTES.get((method, path), RouteDoc())
        if doc.description and not operation.get("description"):
            operation["description"] = doc.description
        responses = operation.setdefault("responses", {})
        refused_parameters = responses.pop("422", None) is not None and _has_checked_parameters(operation)
        found: list[F.Failure] = []

        security, auth_failures = _security(_dependency_calls(route.dependant), doc)
        operation["security"] = security
        found += auth_failures
        if method in ("post", "put", "patch"):
            _ensure_body(operation, doc.body)
            found += body_failures
        if refused_parameters:
            found.append(F.Failure(400, "invalid_value", "a parameter is invalid", "invalid_value"))
        if doc.upstream:
            found += F.UPSTREAM
        if get_memory in _dependency_calls(route.dependant):
            found.append(F.MEMORY_DISABLED)
        found += doc.failures

        responses.update(doc.responses)
        if (method, path) == ("get", "/images/{sha256}"):
            responses["200"] = _image_response(image_types)
        for status, group in _by_status(found).items():
            responses.setdefault(str(status), {}).update(_error_response(status, group))
        operation["responses"] = dict(sorted(responses.items()))

    _drop_unused_schemas(document, ("HTTPValidationError", "ValidationError"))
    return document


def _routes(app: FastAPI) -> Iterator[tuple[str, str, routing.APIRoute]]:
    """Every documented route with its path as the document has it (router prefixes included)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:  # a FastAPI that keeps included routes flat in app.routes
        pairs = [(r.path_format, r) for r in app.routes]
    else:
        pairs = [(c.path_format, c.original_route) for c in contexts(app.routes)]
    for path, route in pairs:
        if isinstance(route, routing.APIRoute) and route.include_in_schema:
            for method in sorted(route.methods or ()):
                yield method.lower(), path, route


def _dependency_calls(dependant: Any) -> set[Any]:
    calls = set()
    for dependency in dependant.dependencies:
        calls.add(dependency.call)
        calls |= _dependency_calls(dependency)
    return calls


def _security(calls: set[Any], doc: RouteDoc) -> tuple[list[dict[str, list]], tuple[F.Failure, ...]]:
    if require_admin in calls:
        return [{"OperatorKey": []}], F.OPERATOR_KEY
    if identify_caller in calls:
        return [{"ApiKey": []}, {"OperatorKey": []}], F.ANY_KEY
    if require_tenant in calls:
        return [{"ApiKey": []}], F.TENANT_KEY
    if doc.optional_operator_key:
        return [{}, {"OperatorKey": []}], ()
    return [], ()


def _ensure_body(operation: dict[str, Any], body: dict[str, Any] | type[BaseModel] | None) -> None:
    if "requestBody" in operation:
        return
    if isinstance(body, type):
        operation["requestBody"] = openapi_body(body)["requestBody"]
    else:
        schema = body or {"type": "object", "additionalProperties": True}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}


def _has_checked_parameters(operation: dict[str, Any]) -> bool:
    """Whether a parameter can fail validation (a 400); a plain string parameter cannot."""
    return any({k: v for k, v in p.get("schema", {}).items() if k != "title"} != {"type": "string"}
               for p in operation.get("parameters", []))


def _by_status(found: list[F.Failure]) -> dict[int, list[F.Failure]]:
    groups: dict[int, list[F.Failure]] = defaultdict(list)
    for failure in found:
        if all(failure.name != seen.name for seen in groups[failure.status]):
            groups[failure.status].append(failure)
    return groups


def _error_response(status: int, group: list[F.Failure]) -> dict[str, Any]:
    codes = ", ".join(dict.fromkeys(f"`{f.code}`" for f in group if isinstance(f.code, str)))
    relayed = any(not isinstance(f.code, str) for f in group)
    text = _STATUS_TEXT.get(status, "Error.")
    if codes:
        text += f" Codes: {codes}."
    if relayed:
        text += " The model server's own answers with this status are relayed as it sent them."
    return {
        "description": text,
        "content": {"application/json": {
            "schema": ERROR_REF,
            "examples": {f.name: {"summary": f.message, "value": f.body()} for f in group},
        }},
    }


def _image_response(image_types: list[str]) -> dict[str, Any]:
    return {
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
        "content": {mime: {"schema": {"type": "string", "format": "binary"}} for mime in image_types},
    }


def _drop_unused_schemas(document: dict[str, Any], names: Iterable[str]) -> None:
    defined = document.get("components", {}).get("schemas", {})
    for name in names:
        if name not in defined:
            continue
        rest = {k: v for k, v in defined.items() if k != name}
        text = json.dumps({**document, "components": {**document["components"], "schemas": rest}})
        if f'"#/components/schemas/{name}"' not in text:
            del defined[name]
