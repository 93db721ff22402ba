"""Complete FastAPI's generated OpenAPI document with what follows from each route's dependencies.

Each route declares its own documentation (gateway.api.openapi.responses: its errors, special
answers; `openapi_extra`: its request body). What the generated document cannot know is the same
for every route with the same dependencies, so it is added here in one pass over the routes:
- the API keys, checked in dependencies that read the header themselves, as bearer schemes, with the
  401/403 of the key the route needs (gateway.api.deps: require_tenant, require_admin, identify_caller);
- the 503 `memory_disabled` of a route that needs the memory (get_memory);
- the 400/413 of reading a body, for a route that reads one;
- no 422: FastAPI's validation errors are answered as OpenAI-shaped 400s (gateway.api.errors);
- the image formats of this gateway's settings where a route answers `image/*`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from PIL import Image

from gateway.api.deps import get_memory, identify_caller, require_admin, require_tenant
from gateway.api.openapi import failures as F
from gateway.api.openapi.responses import ANY_IMAGE, errors, merge_errors
from gateway.api.openapi.schemas import COMPONENTS, ref

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

# The body of a route that reads one but declares none in `openapi_extra`.
_OPEN_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object",
                                                                             "additionalProperties": True}}}}


def describe(document: dict[str, Any], app: FastAPI, *, max_body_bytes: int,
             image_formats: Iterable[str]) -> dict[str, Any]:
    """Complete `document` (FastAPI's, for `app`) in place and return it."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(COMPONENTS)
    components["securitySchemes"] = SECURITY_SCHEMES
    body_failures = F.body_failures(max_body_bytes)
    image_types = sorted({Image.MIME.get(fmt.upper(), f"image/{fmt.lower()}") for fmt in image_formats})

    for method, path, route in _routes(app):
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        refused_parameters = responses.pop("422", None) is not None and _has_checked_parameters(operation)
        calls = _dependency_calls(route.dependant)
        found: list[F.Failure] = []

        security, key_failures = _security(calls)
        if security is not None:
            operation["security"] = security
        else:  # no key dependency: what the route declares (in openapi_extra), else open
            operation.setdefault("security", [])
        found += key_failures
        if method in ("post", "put", "patch"):
            body = (route.openapi_extra or {}).get("requestBody", _OPEN_BODY)
            operation.setdefault("requestBody", copy.deepcopy(body))
            found += body_failures
        if refused_parameters:
            found.append(F.INVALID_PARAMETER)
        if get_memory in calls:
            found.append(F.MEMORY_DISABLED)

        for status, derived in errors(*found).items():
            responses[str(status)] = merge_errors(int(status), derived, responses.get(str(status)))
        for response in responses.values():
            _restore_nulls(response)
            _list_image_types(response, image_types)
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


def _security(calls: set[Any]) -> tuple[list[dict[str, list]] | None, tuple[F.Failure, ...]]:
    """The keys a route's dependencies accept and the failures of a wrong one; None: no key is checked."""
    if require_admin in calls:
        return [{"OperatorKey": []}], F.OPERATOR_KEY
    if identify_caller in calls:
        return [{"ApiKey": []}, {"OperatorKey": []}], F.ANY_KEY
    if require_tenant in calls:
        return [{"ApiKey": []}], F.TENANT_KEY
    return None, ()


def _has_checked_parameters(operation: dict[str, Any]) -> bool:
    """Whether a parameter can fail validation (a 400); a plain string parameter cannot."""
    return any({k: v for k, v in p.get("schema", {}).items() if k != "title"} != {"type": "string"}
               for p in operation.get("parameters", []))


def _restore_nulls(response: dict[str, Any]) -> None:
    # FastAPI drops every null from the document it generates, the `param` and `code` of the error
    # examples a route declares included; an error body always has all four fields.
    json_content = response.get("content", {}).get("application/json", {})
    if json_content.get("schema") != ref("ErrorResponse"):
        return
    for example in json_content.get("examples", {}).values():
        error = example["value"]["error"]
        error.setdefault("param", None)
        error.setdefault("code", None)


def _list_image_types(response: dict[str, Any], image_types: list[str]) -> None:
    content = response.get("content", {})
    if ANY_IMAGE in content:
        schema = content.pop(ANY_IMAGE)
        content.update({mime: copy.deepcopy(schema) for mime in image_types})


def _drop_unused_schemas(document: dict[str, Any], names: Iterable[str]) -> None:
    defined = document.get("components", {}).get("schemas", {})
    for name in names:
        if name not in defined:
            continue
        rest = {k: v for k, v in defined.items() if k != name}
        text = json.dumps({**document, "components": {**document["components"], "schemas": rest}})
        if f'"#/components/schemas/{name}"' not in text:
            del defined[name]
