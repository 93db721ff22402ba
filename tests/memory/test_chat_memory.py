"""Memory in the answer, end to end: the real gateway (uvicorn), the real vLLM server (tiny VLM), the
openai SDK, the tiny random-weight CLIP through fastembed, and the embedded Qdrant engine.

What the upstream received is read back from vLLM itself: `prompt_logprobs` returns the prompt it
rendered, token by token, so the tests see the sources in the model's input, not only in the gateway's
account of it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from tests.memory.conftest import noise_png
from tests.memory.test_e2e import memory_env, start, wait_drained
from tests.plugins.gateway_server import GatewayProcess
from tests.plugins.media import data_url, image_message

pytestmark = pytest.mark.slow

MEMORY = {"visionrag": {"memory": True}}


def ask(gateway: GatewayProcess, model: str, image: bytes | None, text: str, *, key: str = "x",
        system: str | None = None, extra: dict | None = None, stream: bool = False, max_tokens: int = 8):
    client = gateway.client(api_key=key)
    messages = image_message(data_url(image), text) if image else [{"role": "user", "content": text}]
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    body = {**MEMORY, "prompt_logprobs": 0, **(extra or {})}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=stream, extra_body=body
    )
    return raw, raw.parse()


def prompt_seen(completion) -> str:
    """The prompt vLLM rendered, from its prompt_logprobs (one dict per token, the first is None)."""
    pieces = []
    for entry in (completion.model_extra or {}).get("prompt_logprobs") or []:
        if entry:
            pieces.append(next(iter(entry.values()))["decoded_token"] or "")
    return "".join(pieces)


def sources_header(raw) -> list[str]:
    value = raw.headers.get("x-visionrag-sources") or ""
    return [s for s in value.split(",") if s]


@pytest.fixture
def memory_gateway(vllm_server, start_gateway, clip_cache: Path, tmp_path: Path) -> GatewayProcess:
    data_dir = tmp_path / "data"
    env = memory_env(clip_cache, "edge", data_dir, VISIONRAG_MEMORY_CHAT_TIMEOUT_MS="20000",
                     VISIONRAG_API_KEYS="acme:key-a,bravo:key-b,charlie:key-c")
    return start(start_gateway, vllm_server.base_url, env, data_dir)


def test_the_same_image_asked_again_cites_the_first_exchange(memory_gateway: GatewayProcess, vllm_server) -> None:
    gateway, model = memory_gateway, vllm_server.model
    question = "Which service owns the orders table in this diagram?"
    raw, first = ask(gateway, model, noise_png(41), question, key="key-a")
    first_id = raw.headers["x-visionrag-exchange-id"]
    assert raw.headers["x-visionrag-memory"] == "no_sources"
    wait_drained(gateway, headers={"Authorization": "Bearer key-a"})

    # Not streamed: header, and the visionrag object the SDK keeps as an extra field.
    raw, second = ask(gateway, model, noise_png(41), question, key="key-a", system="Answer briefly. ZEBRA-7.")
    assert raw.headers["x-visionrag-memory"] == "used"
    assert sources_header(raw)[0] == first_id
    info = second.model_extra["visionrag"]
    assert info["exchange_id"] == raw.headers["x-visionrag-exchange-id"]
    source = info["sources"][0]
    assert source["n"] == 1 and source["exchange_id"] == first_id and source["question"] == question
    assert source["answer"] == first.choices[0].message.content.strip()[: len(source["answer"])]
    assert source["image_url"].endswith("/images/" + __import__("hashlib").sha256(noise_png(41)).hexdigest())
    # What vLLM received (the tiny model's vocabulary drops spaces and has no word for some): the
    # client's system message first, then the memory's instructions and the source's question, which
    # the prompt now holds twice (in the source and in the user's turn).
    seen = prompt_seen(second)
    assert seen.startswith("system:answer") and "-7." in seen
    assert seen.index("-7.") < seen.index("withyou(your") < seen.index("[1]")
    assert seen.count("tableinthisdiagram?") == 2

    # The journal: the client's own messages, and which sources were used.
    second_id = raw.headers["x-visionrag-exchange-id"]
    record = httpx.get(f"{gateway.url}/exchanges/{second_id}", headers={"Authorization": "Bearer key-a"}).json()
    assert [m["role"] for m in record["messages"]] == ["system", "user"]
    assert record["messages"][0]["text"] == "Answer briefly. ZEBRA-7."
    assert record["sources"][0]["exchange_id"] == first_id

    # Streamed: the same headers; the body is the upstream's stream (the SDK parses every chunk).
    raw, stream = ask(gateway, model, noise_png(41), question, key="key-a", stream=True)
    chunks = list(stream)
    assert chunks and raw.headers["x-visionrag-memory"] == "used"
    assert first_id in sources_header(raw)
    assert all("visionrag" not in (chunk.model_extra or {}) for chunk in chunks)

    # Memory off for one request: nothing injected.
    raw, plain = ask(gateway, model, noise_png(41), question, key="key-a", extra={"visionrag": {"memory": False}})
    assert raw.headers["x-visionrag-memory"] == "off" and "visionrag" not in plain.model_extra
    assert "withyou(your" not in prompt_seen(plain) and prompt_seen(plain).count("tableinthisdiagram?") == 1

    # The injected text is never what memory stores: searching finds no exchange by it.
    wait_drained(gateway, headers={"Authorization": "Bearer key-a"})
    hits = httpx.post(f"{gateway.url}/search", headers={"Authorization": "Bearer key-a"},
                      json={"text": "earlier conversations with you (your memory)", "target": "question",
                            "limit": 20}).json()["data"]
    assert all("your memory" not in h["question"] and "your memory" not in h["answer"] for h in hits)


def test_sources_never_cross_tenants(memory_gateway: GatewayProcess, vllm_server) -> None:
    gateway, model = memory_gateway, vllm_server.model
    rng = random.Random(8)
    keys = {"acme": "key-a", "bravo": "key-b", "charlie": "key-c"}
    own: dict[str, set[str]] = {tenant: set() for tenant in keys}
    # Every tenant asks about the same images: only its own exchanges may come back.
    for _ in range(6):
        tenant = rng.choice(sorted(keys))
        raw, _ = ask(gateway, model, noise_png(rng.randint(1, 2)), "What is shown here?", key=keys[tenant])
        own[tenant].add(raw.headers["x-visionrag-exchange-id"])
        for other_key in keys.values():
            wait_drained(gateway, headers={"Authorization": f"Bearer {other_key}"})
    for tenant, key in keys.items():
        for seed in (1, 2):
            raw, _ = ask(gateway, model, noise_png(seed), "What is shown here?", key=key)
            assert set(sources_header(raw)) <= own[tenant], tenant
            own[tenant].add(raw.headers["x-visionrag-exchange-id"])  # it may be a source from now on


def test_long_past_answers_never_push_the_request_over_the_context(
    vllm_server, start_gateway, clip_cache: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    journal, blobs = Journal(data_dir / "journal.sqlite3"), BlobStore(data_dir / "images")
    sha = blobs.put(noise_png(77))
    long_answer = " ".join(f"fact-{n} the gateway forwards requests to the model server." for n in range(800))
    for _ in range(20):
        journal.append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="tiny",
            tenant="default", user=None, messages=[{"role": "user", "text": "What does this show?"}],
            images=[ImageRef(sha, "image/png")], answer=long_answer, finish_reason="stop", usage=None,
            latency_ms=1.0,
        ))
    journal.close()
    # Only the model's context limits the sources here.
    env = memory_env(clip_cache, "edge", data_dir, VISIONRAG_MEMORY_CHAT_TIMEOUT_MS="30000",
                     VISIONRAG_MEMORY_MAX_TOKENS="1000000", VISIONRAG_MEMORY_SOURCE_CHARS="100000")
    gateway = start(start_gateway, vllm_server.base_url, env, data_dir)
    wait_drained(gateway, headers={})
    limit = httpx.post(vllm_server.base_url.removesuffix("/v1") + "/tokenize",
                       json={"model": vllm_server.model, "prompt": "x"}).json()["max_model_len"]
    for max_tokens in (16, 64):
        raw, completion = ask(gateway, vllm_server.model, noise_png(77), "What does this show?",
                              extra={"visionrag": {"memory": True, "k": 20}}, max_tokens=max_tokens)
        assert raw.http_response.status_code == 200
        assert raw.headers["x-visionrag-memory"] in {"used", "no_room"}
        assert completion.usage.prompt_tokens + max_tokens <= limit


@pytest.mark.parametrize("failure", ["store_down", "over_budget"])
def test_memory_that_cannot_help_never_fails_the_chat(
    failure: str, vllm_server, start_gateway: Callable[..., GatewayProcess], clip_cache: Path, tmp_path: Path
) -> None:
    from tests.plugins.gateway_server import free_port

    data_dir = tmp_path / "data"
    extra = ({"VISIONRAG_QDRANT_URL": f"http://127.0.0.1:{free_port()}"} if failure == "store_down"
             else {"VISIONRAG_MEMORY_CHAT_TIMEOUT_MS": "1"})
    gateway = start(start_gateway, vllm_server.base_url, memory_env(clip_cache, "edge", data_dir, **extra), data_dir)
    for stream in (False, True):
        raw, completion = ask(gateway, vllm_server.model, noise_png(5), "What is this?", stream=stream)
        assert raw.http_response.status_code == 200
        assert raw.headers["x-visionrag-memory"] == ("unavailable" if failure == "store_down" else "timeout")
        if stream:
            assert list(completion)
        else:
            assert completion.choices[0].message.content is not None
            assert completion.model_extra["visionrag"]["sources"] == []
