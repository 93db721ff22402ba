"""An exchange the client received survives the gateway being killed; an abandoned one is kept too."""

import time

import httpx

from tests.plugins.media import data_url, image_message, png_bytes


def test_sigkill_right_after_responses_loses_nothing(start_gateway, vllm_server):
    gateway = start_gateway(vllm_server.base_url)
    client = gateway.client()
    received = {}
    for i in range(6):
        messages = image_message(data_url(png_bytes(color=(i * 40, 10, 10))), f"question {i}")
        if i % 2:
            raw = client.chat.completions.with_raw_response.create(
                model=vllm_server.model, messages=messages, max_tokens=6, stream=True)
            answer = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=vllm_server.model, messages=messages, max_tokens=6)
            answer = raw.parse().choices[0].message.content
        received[raw.headers["x-visionrag-exchange-id"]] = (f"question {i}", answer)

    gateway.kill()  # immediately after the last response: no shutdown hook runs

    journal = gateway.journal()
    assert journal.count() == 6
    for exchange_id, (question, answer) in received.items():
        exchange = journal.get(exchange_id)
        assert (exchange.question, exchange.answer, exchange.status) == (question, answer, "complete")
        assert (gateway.data_dir / "images" / exchange.images[0].sha256[:2] / exchange.images[0].sha256).exists()

    gateway.start()  # and the gateway comes back on the same journal
    client.chat.completions.create(model=vllm_server.model, messages=[{"role": "user", "content": "again"}],
                                   max_tokens=2)
    assert gateway.journal().count() == 7


def test_abandoned_stream_is_recorded_as_incomplete(start_gateway, fake_upstream):
    # Double: the tiny real model can finish 1,500 tokens before a client's close reaches the gateway
    # (then the gateway has sent everything, and "complete" is right). A scripted upstream pacing its
    # chunks 50 ms apart makes "the client left mid-answer" happen every time.
    upstream = fake_upstream(None, "--chunks", "200", "--chunk-delay", "0.05")
    gateway = start_gateway(upstream.base_url)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=60, json={
            "model": "fake-vlm", "stream": True,
            "messages": [{"role": "user", "content": "Tell a long story."}]}) as response:
        exchange_id = response.headers["x-visionrag-exchange-id"]
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]  # a few events, then the client walks away
    assert any(line.startswith("data: ") for line in received)

    deadline = time.monotonic() + 30
    while (exchange := gateway.journal().get(exchange_id)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exchange is not None, "the abandoned stream was not recorded"
    assert exchange.status == "incomplete"
    assert exchange.finish_reason is None
    assert exchange.answer.startswith("tok0 tok1 ")
