"""JSON schemas for what the gateway reads and answers without a pydantic model, as named components.

The OpenAI-compatible routes read raw JSON (unknown fields pass through to vLLM) and relay the model
server's answers byte for byte, so no model of the gateway's describes them, and a pydantic class
written only for the document would validate nothing. These schemas say what the gateway itself
checks, and leave the rest open (`additionalProperties: true`) because it does forward it. Routes
refer to them by name (`ref`); the document carries every one under `components/schemas`.
"""

from __future__ import annotations

from typing import Any

from gateway.proxy.messages import REFUSED_FIELDS

_REFUSED = ", ".join(f"`{name}`" for name in REFUSED_FIELDS)

ERROR_RESPONSE: dict[str, Any] = {
    "title": "ErrorResponse",
    "description": "Every error the gateway answers with, in OpenAI's shape.",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "description": "What failed, for a person to read."},
                "type": {"type": "string", "examples": ["invalid_request_error", "authentication_error"]},
                "param": {"type": ["string", "null"],
                          "description": "The request field at fault (`messages[0].content[1].image_url`)."},
                "code": {"type": ["string", "integer", "null"],
                         "description": "A stable machine-readable reason (`invalid_api_key`); an integer "
                                        "when relayed from the model server."},
            },
        },
    },
}

_TEXT_PART = {
    "title": "TextPart",
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"type": "string", "enum": ["text", "input_text", "output_text"]},
        "text": {"type": "string"},
    },
}

_IMAGE_PART = {
    "title": "ImagePart",
    "description": "An image, fetched or decoded and checked by the gateway (format, bytes, pixels) and "
                   "forwarded as a `data:` URL; the model server never fetches a URL. `uuid` alone (vLLM's "
                   "media cache key, without the image) is refused.",
    "type": "object",
    "required": ["image_url"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url", "input_image"]},
        "image_url": {
            "anyOf": [
                {"type": "string", "description": "The URL itself, in `input_image` and typeless parts only: "
                                                  "`\"type\": \"image_url\"` takes the object, as in vLLM and OpenAI."},
                {"type": "object", "required": ["url"], "properties": {
                    "url": {"type": "string",
                            "description": "`data:image/...;base64,...` or an http(s) URL the gateway fetches "
                                           "(public addresses only)."},
                    "detail": {"type": "string", "enum": ["auto", "low", "high"],
                               "description": "Accepted for compatibility; not forwarded."},
                }},
            ],
        },
    },
}

_REFUSAL_PART = {
    "title": "RefusalPart",
    "type": "object",
    "required": ["type", "refusal"],
    "properties": {"type": {"type": "string", "const": "refusal"}, "refusal": {"type": "string"}},
}

_MESSAGE = {
    "title": "ChatMessage",
    "type": "object",
    "required": ["role"],
    "additionalProperties": True,
    "properties": {
        "role": {"type": "string", "examples": ["system", "user", "assistant", "tool", "developer"]},
        "content": {
            "description": "A string, or a list of content parts. Each part is rebuilt by the gateway; "
                           "audio, video, file and embedding parts, unknown types and media keys on a text "
                           "part are refused with a 400 naming the part.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"anyOf": [
                    _TEXT_PART, _IMAGE_PART, _REFUSAL_PART,
                    {"type": "string", "description": "vLLM's shorthand for a text part."},
                ]}},
                {"type": "null"},
            ],
        },
        "name": {"type": "string"},
    },
}

_SAMPLING: dict[str, Any] = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0},
    "top_p": {"type": "number"},
    "n": {"type": "integer", "minimum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "seed": {"type": "integer"},
    "stream": {"type": "boolean", "default": False,
               "description": "true: the answer comes as `text/event-stream`."},
    "stream_options": {
        "type": "object", "additionalProperties": True,
        "properties": {"include_usage": {"type": "boolean",
                                         "description": "Send a final usage chunk. The gateway always asks "
                                                        "the model server for it (the journal records "
                                                        "usage) and keeps it from clients that did not."}},
    },
    "user": {"type": "string", "description": "Recorded with the exchange; `/search` can filter on it."},
}

CHAT_REQUEST: dict[str, Any] = {
    "title": "ChatCompletionRequest",
    "description": "OpenAI's chat completion request. Fields not listed here (sampling, `response_format`, "
                   "tools, vLLM extras such as `top_k`) are forwarded to the model server unchanged, except "
                   f"{_REFUSED} (400 `unsupported_parameter`).",
    "type": "object",
    "required": ["messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "description": "A model the upstream serves (`GET /v1/models`)."},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        **_SAMPLING,
    },
    "examples": [{
        "model": "llama-3.2-11b-vision",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo..."}},
        ]}],
        "max_tokens": 64,
    }],
}

COMPLETION_REQUEST: dict[str, Any] = {
    "title": "CompletionRequest",
    "description": "OpenAI's (legacy) text completion request, recorded like a chat. Other fields are "
                   f"forwarded unchanged, except {_REFUSED} (400 `unsupported_parameter`).",
    "type": "object",
    "required": ["prompt"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string"},
        "prompt": {"anyOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"type": "string"}},
            {"type": "array", "minItems": 1, "items": {"type": "integer"}},
            {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "integer"}}},
        ]},
        **_SAMPLING,
    },
}

TOKENIZE_REQUEST: dict[str, Any] = {
    "title": "TokenizeRequest",
    "description": "vLLM's tokenizer request, forwarded to the model server. `messages` go through the same "
                   "content and image checks as a chat.",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string"},
        "prompt": {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "tokens": {"type": "array", "items": {"type": "integer"}, "description": "For `/detokenize`."},
    },
}

_USAGE = {
    "type": "object",
    "additionalProperties": True,
    "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                   "total_tokens": {"type": "integer"}},
}

CHAT_COMPLETION: dict[str, Any] = {
    "title": "ChatCompletion",
    "description": "The model server's answer, relayed byte for byte.",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {
            "type": "object", "additionalProperties": True,
            "properties": {
                "index": {"type": "integer"},
                "message": {"type": "object", "additionalProperties": True,
                            "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]}}},
                "finish_reason": {"type": ["string", "null"]},
            },
        }},
        "usage": _USAGE,
    },
}

COMPLETION: dict[str, Any] = {
    "title": "Completion",
    "description": "The model server's answer, relayed byte for byte.",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "const": "text_completion"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {
            "type": "object", "additionalProperties": True,
            "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                           "finish_reason": {"type": ["string", "null"]}},
        }},
        "usage": _USAGE,
    },
}

EVENT_STREAM = {
    "schema": {
        "type": "string",
        "description": "With `stream: true`: server-sent events `data: {chunk}` (`chat.completion.chunk` or "
                       "`text_completion` objects) ending with `data: [DONE]`. If the model server breaks off "
                       "mid-stream, the last event is `data: {\"error\": {..., \"code\": \"upstream_error\"}}`.",
    },
    "example": 'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": '
               '{"content": "A"}}]}\n\ndata: [DONE]\n\n',
}

READINESS: dict[str, Any] = {
    "title": "Readiness",
    "type": "object",
    "required": ["status", "upstreams"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded"],
                   "description": "`degraded`: no model server replica answers (chats answer 503); still a 200."},
        "upstreams": {"type": "object", "properties": {"healthy": {"type": "integer"},
                                                       "total": {"type": "integer"}}},
        "replicas": {"type": "array", "description": "Only for an operator key.",
                     "items": {"type": "object", "properties": {"url": {"type": "string"},
                                                                "healthy": {"type": "boolean"}}}},
    },
}

EXCHANGE_ID_HEADER = {
    "description": "The id of the recorded exchange (`GET /exchanges/{exchange_id}`); absent when the answer "
                   "was not recorded (the model server's own errors).",
    "schema": {"type": "string"},
}


COMPONENTS: dict[str, dict[str, Any]] = {
    "ErrorResponse": ERROR_RESPONSE,
    "ChatCompletionRequest": CHAT_REQUEST,
    "CompletionRequest": COMPLETION_REQUEST,
    "TokenizeRequest": TOKENIZE_REQUEST,
    "ChatCompletion": CHAT_COMPLETION,
    "Completion": COMPLETION,
    "Readiness": READINESS,
}


def ref(name: str) -> dict[str, str]:
    """A reference to one of COMPONENTS; a name that is none of them fails at import, not in /docs."""
    if name not in COMPONENTS:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}"}
