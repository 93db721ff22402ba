"""Reading OpenAI chat messages: where the images are, and what the text says.

Only what the gateway needs is looked at; everything else in a request passes through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError


@dataclass(slots=True)
class ImagePart:
    param: str  # where it is, for error messages: messages[0].content[1].image_url
    url: str
    holder: dict[str, Any]  # the dict whose `key` holds the URL, rewritten after normalization
    key: str


def require_messages(payload: Any) -> list[Any]:
    if not isinstance(payload, dict):
        raise GatewayError(400, "request body must be a JSON object", code="invalid_request")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "`messages` must be a non-empty list", param="messages", code="invalid_value")
    return messages


def image_parts(messages: list[Any]) -> list[ImagePart]:
    found: list[ImagePart] = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "image_url":
                value = part.get("image_url")
                param = f"messages[{i}].content[{j}].image_url"
                if isinstance(value, dict):
                    url = value.get("url")
                    if not isinstance(url, str):
                        raise GatewayError(400, f"{param}.url must be a string", param=param,
                                           code="invalid_image_url")
                    found.append(ImagePart(param, url, value, "url"))
                elif isinstance(value, str):
                    found.append(ImagePart(param, value, part, "image_url"))
                else:
                    raise GatewayError(400, f"{param} must be an object with a `url`", param=param,
                                       code="invalid_image_url")
            elif kind == "input_image" and isinstance(part.get("image_url"), str):
                found.append(ImagePart(f"messages[{i}].content[{j}].image_url", part["image_url"], part,
                                       "image_url"))
    return found


def message_texts(messages: list[Any]) -> list[dict[str, str]]:
    """Each message's role and text, with image parts left out (they are recorded as images)."""
    texts = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\n".join(
                part["text"] for part in content
                if isinstance(part, dict) and part.get("type") in ("text", "input_text")
                and isinstance(part.get("text"), str)
            )
        else:
            text = ""
        texts.append({"role": str(message.get("role", "")), "text": text})
    return texts
