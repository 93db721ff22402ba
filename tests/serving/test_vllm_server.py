"""Smoke tests of the real vLLM server (tiny profile) through the real `openai` SDK.

The tiny model has random weights: assert on shapes, usage, finish reasons and determinism,
never on the words.
"""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

from serving.stack import http_ok
from tests.plugins.vllm_server import VllmServer

MAX_TOKENS = 12


def png_data_url(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_messages(url: str, text: str = "What does this diagram show?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]  # fmt: skip


@pytest.fixture(scope="module")
def client(vllm_server: VllmServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm_server.base_url, api_key="unused", max_retries=0, timeout=60)


def ask(client: openai.OpenAI, model: str, url: str) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=model, messages=image_messages(url), max_tokens=MAX_TOKENS, temperature=0
    )


def test_server_is_healthy_and_serves_the_tiny_model(vllm_server: VllmServer, client: openai.OpenAI) -> None:
    assert vllm_server.base_url.startswith("http://127.0.0.1:") and vllm_server.base_url.endswith("/v1")
    assert http_ok(vllm_server.root_url + "/health")
    assert [model.id for model in client.models.list()] == [vllm_server.model]


def test_chat_completion_with_an_image(vllm_server: VllmServer, client: openai.OpenAI) -> None:
    red = png_data_url((220, 30, 30))
    answer = ask(client, vllm_server.model, red)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    # Special tokens can never be generated, so the answer always runs to max_tokens.
    assert choice.finish_reason == "length"
    assert answer.usage.completion_tokens == MAX_TOKENS
    # The image's 16 tokens (plus 3 markers around them) are part of the prompt.
    text_only = client.chat.completions.create(
        model=vllm_server.model, messages=[{"role": "user", "content": "What does this diagram show?"}],
        max_tokens=1, temperature=0,
    )  # fmt: skip
    assert answer.usage.prompt_tokens - text_only.usage.prompt_tokens == 16 + 3
    # Seeded weights + greedy decoding: deterministic, and the pixels matter.
    assert ask(client, vllm_server.model, red).choices[0].message.content == choice.message.content
    others = {ask(client, vllm_server.model, png_data_url(c)).choices[0].message.content
              for c in [(20, 40, 230), (30, 200, 40), (250, 250, 250)]}  # fmt: skip
    assert others - {choice.message.content}, "different images should not all give the red answer"


def test_streaming(vllm_server: VllmServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=vllm_server.model,
        messages=image_messages(png_data_url((220, 30, 30))),
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    # Usually one chunk per token; a busy server may put several tokens in one chunk.
    assert 1 < len(content) <= MAX_TOKENS
    assert content[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == MAX_TOKENS
    streamed = "".join(chunk.choices[0].delta.content for chunk in content)
    assert streamed == ask(client, vllm_server.model, png_data_url((220, 30, 30))).choices[0].message.content


def test_one_image_per_prompt(vllm_server: VllmServer, client: openai.OpenAI) -> None:
    url = png_data_url((10, 10, 10))
    two = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                        {"type": "image_url", "image_url": {"url": url}},
                                        {"type": "text", "text": "compare"}]}]  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="At most 1 image"):
        client.chat.completions.create(model=vllm_server.model, messages=two, max_tokens=4)


def test_stop_sequence_gives_finish_reason_stop(vllm_server: VllmServer, client: openai.OpenAI) -> None:
    red = png_data_url((220, 30, 30))
    words = ask(client, vllm_server.model, red).choices[0].message.content.split()
    answer = client.chat.completions.create(
        model=vllm_server.model, messages=image_messages(red), max_tokens=MAX_TOKENS, temperature=0,
        stop=[words[1]],
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop"
