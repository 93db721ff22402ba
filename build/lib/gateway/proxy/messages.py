"""Chat messages as the gateway forwards them: every content part rebuilt from a closed set of shapes.

vLLM reads media from more shapes than OpenAI documents (`vllm/renderers/chat_utils.py` in 0.32,
`vllm/entrypoints/chat_utils.py` in 0.10.2): a part with no `type` or `"type": null`, any part with a
`uuid`, and `image_url`, `audio_url`, `video_url`, `input_audio`, `image_pil` or `*_embeds` keys, in
any message role. A part forwarded as the client sent it could make vLLM fetch or decode media the
gateway never checked or recorded. So nothing is forwarded as sent: each part is rebuilt as
`{"type": "text", "text": ...}` or `{"type": "image_url", "image_url": {"url": <verified data: URL>}}`
(the URL is filled in by the image path), and anything else is refused with a 400 naming the part.
Message fields other than `content` pass through: vLLM reads no media from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest

_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
_IMAGE_TYPES = frozenset({"image_url", "input_image"})
# Every key that makes vLLM (0.10.2 or 0.32) read media from a part, whatever its `type` says.
_MEDIA_KEYS = frozenset({
    "image_url", "image_pil", "image_embeds", "audio_url", "input_audio", "audio_embeds", "video_url",
    "video_embeds", "prompt_embeds", "file", "uuid",
})
# Request fields that change how vLLM reads or renders media and prompts, bypassing the gateway's
# limits (a processor's resize target, media decoder options, a client-supplied Jinja template,
# which 0.10.2 renders), or that carry raw tensors. Refused rather than forwarded.
REFUSED_FIELDS = {
    "mm_processor_kwargs": "it changes how the model server resizes and decodes images",
    "media_io_kwargs": "it changes how the model server decodes media",
    "chat_template": "the model server's own chat template is used",
    "prompt_embeds": "raw embeddings bypass the gateway's checks",
    "multi_modal_data": "media must be sent as image_url content parts",
}


@dataclass(slots=True)
class ImagePart:
    param: str  # where it is, for error messages: messages[0].content[1].image_url
    url: str
    holder: dict[str, Any]  # the rebuilt `image_url` object; its "url" is replaced once verified


def _invalid(param: str, message: str, code: str = "invalid_content_part") -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code=code)


def refuse_unsafe_fields(payload: dict[str, Any]) -> None:
    for name, why in REFUSED_FIELDS.items():
        if payload.get(name) is not None:
            raise InvalidRequest(f"`{name}` is not accepted by this gateway: {why}.", param=name,
                               code="unsupported_parameter")


def require_messages(payload: Any) -> list[Any]:
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_request")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list", param="messages", code="invalid_value")
    return messages


def normalize_messages(messages: list[Any]) -> list[ImagePart]:
    """Rebuild every message's content in place; return the image parts, in order, still to be loaded."""
    images: list[ImagePart] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object", param=where, code="invalid_value")
        if not isinstance(message.get("role"), str):
            raise InvalidRequest(f"{where}.role must be a string", param=f"{where}.role",
                               code="invalid_value")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"{where}.content must be a string or a list of content parts",
                               param=f"{where}.content", code="invalid_value")
        message["content"] = [_normalize_part(part, f"{where}.content[{j}]", images)
                              for j, part in enumerate(content)]
    return images


def _normalize_part(part: Any, param: str, images: list[ImagePart]) -> dict[str, Any]:
    if isinstance(part, str):  # vLLM's shorthand for a text part
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise _invalid(param, "a content part must be an object")
    kind = part.get("type")
    if kind is not None and not isinstance(kind, str):
        raise _invalid(f"{param}.type", "must be a string")
    if kind in _TEXT_TYPES:
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{param}.text", "must be a string")
        _no_media(part, param, allowed=())
        return {"type": "text", "text": text}
    if kind == "refusal":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise _invalid(f"{param}.refusal", "must be a string")
        _no_media(part, param, allowed=())
        return {"type": "refusal", "refusal": refusal}
    # vLLM treats a part with no type, or any part with a `uuid`, as media; only images are understood.
    if kind in _IMAGE_TYPES or (kind is None and "image_url" in part):
        return _image_part(part, param, images)
    if kind is None:
        raise _invalid(param, "content part has no `type`; send text or image_url parts")
    raise _invalid(
        f"{param}.type",
        f"content part type {kind[:40]!r} is not supported by this gateway; send text or image_url parts",
        code="unsupported_content_part",
    )


def _no_media(part: dict[str, Any], param: str, allowed: tuple[str, ...]) -> None:
    for key in _MEDIA_KEYS.intersection(part):
        if key not in allowed:
            raise _invalid(f"{param}.{key}", f"a {part.get('type') or 'typeless'} part cannot carry `{key}`")


def _image_part(part: dict[str, Any], param: str, images: list[ImagePart]) -> dict[str, Any]:
    # The `uuid` (vLLM's media cache key) is dropped: the image itself is always sent, and vLLM's
    # processor cache still recognizes repeated images by their content hash.
    _no_media(part, param, allowed=("image_url", "uuid"))
    value = part.get("image_url")
    param = f"{param}.image_url"
    if isinstance(value, dict):
        url = value.get("url")
        if not isinstance(url, str):
            message = ("`url` is missing: a part that names a cached image by `uuid` alone is refused, "
                       "because the gateway checks and records every image the model sees"
                       if part.get("uuid") is not None and url is None else "`url` must be a string")
            raise _invalid(f"{param}.url", message, code="invalid_image_url")
    elif isinstance(value, str) and part.get("type") == "image_url":
        # vLLM (its pydantic part type) and OpenAI refuse this shape; passing it would make a client
        # that works here fail against the API the gateway imitates.
        raise _invalid(param, 'input should be an object with a `url` (`{"url": "https://..."}`), not a '
                       'string, in an "image_url" part', code="invalid_image_url")
    elif isinstance(value, str):  # `input_image` parts, and vLLM's typeless shorthand
        url = value
    elif value is None and part.get("uuid") is not None:
        raise _invalid(param, "a part that names a cached image by `uuid` alone is refused, because the "
                       "gateway checks and records every image the model sees", code="invalid_image_url")
    else:
        raise _invalid(param, "must be an object with a `url`", code="invalid_image_url")
    holder = {"url": url}
    images.append(ImagePart(param, url, holder))
    return {"type": "image_url", "image_url": holder}


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
                if isinstance(part, dict) and part.get("type") in _TEXT_TYPES
                and isinstance(part.get("text"), str)
            )
        else:
            text = ""
        texts.append({"role": str(message.get("role", "")), "text": text})
    return texts
