"""vLLM's other endpoints that clients use: /v1/completions (recorded like chats), /tokenize, /detokenize,
against the real vLLM. The gateway's own part (streams recorded, refusals) is tested in process:
test_relay.py and tests/gateway/api/test_errors.py."""

from __future__ import annotations

import httpx


def test_text_completion_is_relayed_and_recorded(shared_gateway, vllm_server):
    client = shared_gateway.client()
    raw = client.completions.with_raw_response.create(
        model=vllm_server.model, prompt="Describe the schema:", max_tokens=5, user="ana", temperature=0)
    completion = raw.parse()
    direct = httpx.post(vllm_server.base_url + "/completions", timeout=60,
                        json={"model": vllm_server.model, "prompt": "Describe the schema:", "max_tokens": 5,
                                "temperature": 0})
    assert completion.choices[0].text == direct.json()["choices"][0]["text"]  # greedy: identical
    exchange = shared_gateway.journal().get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.endpoint == "completions"
    assert exchange.question == "Describe the schema:"
    assert exchange.answer == completion.choices[0].text
    assert exchange.user == "ana" and exchange.images == []
    assert exchange.usage["completion_tokens"] == completion.usage.completion_tokens


def test_token_ids_prompt_is_recorded_without_text(shared_gateway, vllm_server):
    response = httpx.post(shared_gateway.url + "/v1/completions", timeout=60,
                          json={"model": vllm_server.model, "prompt": [5, 6, 7], "max_tokens": 2})
    assert response.status_code == 200, response.text
    exchange = shared_gateway.journal().get(response.headers["x-visionrag-exchange-id"])
    assert exchange.question == "" and exchange.answer == response.json()["choices"][0]["text"]


def test_tokenize_and_detokenize_pass_through(shared_gateway, vllm_server):
    body = {"model": vllm_server.model, "prompt": "the orders table"}
    via = httpx.post(shared_gateway.url + "/tokenize", json=body, timeout=60)
    direct = httpx.post(vllm_server.root_url + "/tokenize", json=body, timeout=60)
    assert via.status_code == 200 and via.json() == direct.json()
    back = httpx.post(shared_gateway.url + "/detokenize", timeout=60,
                      json={"model": vllm_server.model, "tokens": via.json()["tokens"]})
    assert back.status_code == 200 and "prompt" in back.json()
    # vLLM's own validation errors come back as they are (400), not as gateway failures.
    bad = httpx.post(shared_gateway.url + "/detokenize", json={"model": vllm_server.model, "tokens": "x"},
                     timeout=60)
    assert bad.status_code == 400
