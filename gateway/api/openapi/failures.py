"""The errors each kind of route can answer with, as the document's examples.

The messages and codes are those the gateway raises (gateway.auth, gateway.proxy, gateway.memory);
the bodies are built by GatewayError itself, so their `type` is the one clients receive. A route
declares its own with `responses=errors(...)` (gateway.api.openapi.responses); those of its key, its
body and the memory are added from its dependencies (gateway.api.openapi.document).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import TYPES, Relayed


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    name: str  # the example's key in the document
    message: str
    code: str | int | None
    param: str | None = None
    type: str | None = None

    def body(self) -> dict:
        return Relayed(self.status, self.message, type=self.type or TYPES.get(self.status), param=self.param,
                       code=self.code).body()


MISSING_KEY = Failure(401, "missing_api_key", "Missing API key: send `Authorization: Bearer <key>`.",
                      "invalid_api_key")
INVALID_KEY = Failure(401, "invalid_api_key", "Invalid API key.", "invalid_api_key")
OPERATOR_ON_TENANT_ROUTE = Failure(403, "operator_key", "This is an operator key; tenant routes need a tenant's key.",
                                   "permission_denied")
TENANT_ON_OPERATOR_ROUTE = Failure(403, "tenant_key", "This route needs an operator key (VISIONRAG_ADMIN_KEYS).",
                                   "permission_denied")

TENANT_KEY = (MISSING_KEY, INVALID_KEY, OPERATOR_ON_TENANT_ROUTE)
ANY_KEY = (MISSING_KEY, INVALID_KEY)
OPERATOR_KEY = (MISSING_KEY, INVALID_KEY, TENANT_ON_OPERATOR_ROUTE)


# FastAPI's own check of a query or path parameter (its 422, answered as a 400).
INVALID_PARAMETER = Failure(400, "invalid_value", "a parameter is invalid", "invalid_value")


def body_failures(max_body_bytes: int) -> tuple[Failure, ...]:
    return (
        Failure(400, "invalid_json", "request body is not valid JSON: unexpected end of data: line 1 column 15 "
                "(char 14)", "invalid_json"),
        Failure(400, "not_an_object", "request body must be a JSON object", "invalid_request"),
        Failure(413, "request_too_large", f"request body is larger than the {max_body_bytes}-byte limit",
                "request_too_large"),
    )


# The model server's own 4xx answers are relayed as it sent them.
RELAYED_NOT_FOUND = Failure(404, "model_not_found", "The model `no-such-model` does not exist.", 404,
                            param="model", type="NotFoundError")
RELAYED_BAD_REQUEST = Failure(400, "model_server_limit", "At most 1 image(s) may be provided in one prompt.", 400,
                              type="BadRequestError")
RELAYED = (RELAYED_BAD_REQUEST, RELAYED_NOT_FOUND)

UPSTREAM = (
    Failure(502, "upstream_error", "the model server failed to answer this request", "upstream_error"),
    Failure(503, "upstream_unavailable", "the model server is unavailable; try again shortly",
            "upstream_unavailable"),
    Failure(504, "upstream_timeout", "the upstream model server did not answer within 300 s", "upstream_timeout"),
)

UNSUPPORTED_PARAMETER = Failure(
    400, "unsupported_parameter", "`chat_template` is not accepted by this gateway: the model server's own chat "
    "template is used.", "unsupported_parameter", param="chat_template")

MESSAGES = (
    Failure(400, "invalid_messages", "`messages` must be a non-empty list", "invalid_value", param="messages"),
    Failure(400, "unsupported_content_part", "messages[0].content[1].type: content part type 'input_audio' is not "
            "supported by this gateway; send text or image_url parts", "unsupported_content_part",
            param="messages[0].content[1].type"),
    Failure(400, "image_url_blocked", "messages[0].content[1].image_url: image URL points to a non-public "
            "address (127.0.0.1); the gateway's setting VISIONRAG_FETCH_ALLOW_HOSTS=127.0.0.1 allows it",
            "image_url_blocked", param="messages[0].content[1].image_url"),
    Failure(400, "image_too_large", "messages[0].content[1].image_url: image is 7000x7000 pixels, over the "
            "36000000-pixel limit", "image_too_large", param="messages[0].content[1].image_url"),
    Failure(400, "too_many_images", "too many images: 9 in this request, the limit is 8", "too_many_images",
            param="messages"),
    UNSUPPORTED_PARAMETER,
)

PROMPT = Failure(400, "invalid_prompt", "`prompt` must be a string, a list of strings, or token ids",
                 "invalid_value", param="prompt")

PREDICT = (
    Failure(400, "invalid_value", "user_query: Field required", "invalid_value", param="user_query"),
    Failure(400, "image_url_blocked", "image_url: image URL host example.internal resolves to a non-public address;"
            " the gateway's setting VISIONRAG_FETCH_ALLOW_HOSTS=example.internal allows it", "image_url_blocked",
            param="image_url"),
    Failure(502, "no_default_model", "no default model: set VISIONRAG_DEFAULT_MODEL or pass `model`",
            "no_default_model"),
)

SEARCH = (
    Failure(400, "invalid_value", "give exactly one of `text` or `image`", "invalid_value"),
    Failure(400, "invalid_image", "image: the image cannot be decoded", "invalid_image", param="image"),
)

MEMORY_DISABLED = Failure(503, "memory_disabled",
                          "memory is disabled on this gateway (VISIONRAG_MEMORY_ENABLED=false)", "memory_disabled")


def memory_unavailable(what: str) -> Failure:
    return Failure(503, "memory_unavailable", f"{what} is unavailable right now; retry shortly",
                   "memory_unavailable")


EXCHANGE_NOT_FOUND = Failure(404, "exchange_not_found", "No exchange with id 'a1b2c3'.", "exchange_not_found",
                             param="exchange_id")
EXCHANGE_ID_AMBIGUOUS = Failure(400, "exchange_id_ambiguous", "Exchange id prefix '3f2a' is ambiguous: it starts "
                                "3f2a09c1d4e5f60718293a4b5c6d7e8f, 3f2a7b6c5d4e3f2a1b0c9d8e7f6a5b4c. Give more of the id.",
                                "exchange_id_ambiguous", param="exchange_id")
IMAGE_NOT_FOUND = Failure(404, "image_not_found", "No such image.", "image_not_found", param="sha256")
INVALID_CURSOR = Failure(400, "invalid_cursor", "`cursor` is not one this gateway returned", "invalid_cursor",
                         param="cursor")
FORGET_WITHOUT_FILTER = Failure(400, "invalid_value", "give `user`, `before`, or both", "invalid_value")
