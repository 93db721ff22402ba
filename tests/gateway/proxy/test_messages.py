"""Content parts (gateway.proxy.messages), without a model server."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.proxy.messages import normalize_messages


def test_parts_are_rebuilt_and_images_listed_in_order() -> None:
    messages = [
        {"role": "system", "content": "plain"},
        {"role": "user", "content": ["shorthand", {"type": "text", "text": "t"},
                                     {"type": "image_url", "image_url": {"url": "data:a", "detail": "high"}},
                                     {"image_url": "data:b", "uuid": "u"}]},
    ]
    images = normalize_messages(messages)
    assert [(i.param, i.url) for i in images] == [("messages[1].content[2].image_url", "data:a"),
                                                 ("messages[1].content[3].image_url", "data:b")]
    assert messages[1]["content"] == [{"type": "text", "text": "shorthand"}, {"type": "text", "text": "t"},
                                      {"type": "image_url", "image_url": {"url": "data:a"}},
                                      {"type": "image_url", "image_url": {"url": "data:b"}}]
    images[0].holder["url"] = "data:verified"  # what the chat service does once the image is loaded
    assert messages[1]["content"][2]["image_url"]["url"] == "data:verified"


@pytest.mark.parametrize(("content", "param", "code"), [
    ([{"type": "text"}], "messages[0].content[0].text", "invalid_content_part"),
    ([{"type": "input_audio", "input_audio": {}}], "messages[0].content[0].type", "unsupported_content_part"),
    ([{"type": "text", "text": "x", "image_url": "data:a"}], "messages[0].content[0].image_url",
     "invalid_content_part"),
    ([{"type": "image_url", "uuid": "u"}], "messages[0].content[0].image_url", "invalid_image_url"),
    ([{"type": "image_url", "image_url": {"uuid": "u"}}], "messages[0].content[0].image_url.url",
     "invalid_image_url"),
    ([{"foo": 1}], "messages[0].content[0]", "invalid_content_part"),
    # Unhashable types once reached a set lookup: a TypeError, answered 500.
    ([{"type": {}, "text": "hi"}], "messages[0].content[0].type", "invalid_content_part"),
    ([{"type": [None], "image_url": {"url": "data:a"}}], "messages[0].content[0].type", "invalid_content_part"),
    (["ok", {"type": {"nested": []}}], "messages[0].content[1].type", "invalid_content_part"),
    # vLLM and OpenAI take an object here, never a string.
    ([{"type": "image_url", "image_url": "https://example.com/a.png"}], "messages[0].content[0].image_url",
     "invalid_image_url"),
    ([{"type": "image_url", "image_url": "data:a", "uuid": "u"}], "messages[0].content[0].image_url",
     "invalid_image_url"),
    (7, "messages[0].content", "invalid_value"),
])
def test_refused_parts_name_where_they_are(content: object, param: str, code: str) -> None:
    with pytest.raises(GatewayError) as refused:
        normalize_messages([{"role": "user", "content": content}])
    assert (refused.value.status, refused.value.param, refused.value.code) == (400, param, code)
    assert refused.value.message.startswith(param)


def test_image_url_strings_stay_accepted_where_the_apis_take_them() -> None:
    """A string is the URL itself in Responses-style `input_image` parts and in vLLM's typeless shorthand."""
    messages = [{"role": "user", "content": [{"type": "input_image", "image_url": "data:a"},
                                             {"image_url": "data:b"}, {"type": None, "image_url": "data:c"}]}]
    assert [image.url for image in normalize_messages(messages)] == ["data:a", "data:b", "data:c"]
