"""VISIONRAG_LOG_FORMAT=json: one JSON object per line, uvicorn's lines included, each request's lines
carrying its own tenant and exchange id.

A real gateway process (uvicorn configures its loggers first, as in production). The upstream is the
scripted one (double): a request logs only when something goes wrong, and a stream that breaks off
mid-answer is what a real vLLM cannot be made to do on demand. It also shows that the stream's relay
task, which logs the break, carries the request's fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys

import httpx

from gateway.logs import JsonFormatter, bind

KEYS = "acme:sk-acme,bravo:sk-bravo"


def broken_stream(url: str, key: str) -> str:
    response = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": "fake-vlm", "stream": True,
                                "messages": [{"role": "user", "content": "hello"}]})
    assert response.status_code == 200
    return response.headers["x-visionrag-exchange-id"]


def test_json_lines_carry_each_requests_tenant_and_exchange_id(start_gateway, fake_upstream):
    upstream = fake_upstream(None, "--chunks", "8", "--break-after", "3")
    gw = start_gateway(upstream.base_url, log_format="json", api_keys=KEYS)
    acme = broken_stream(gw.url, "sk-acme")
    bravo = broken_stream(gw.url, "sk-bravo")
    gw.stop()

    lines = [json.loads(line) for line in gw.log_path.read_text().splitlines() if line.strip()]
    assert lines, "the gateway logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert any(line["logger"].startswith("uvicorn") and "startup complete" in line["message"] for line in lines)
    broke = [line for line in lines if line["message"].startswith("upstream stream broke off")]
    assert [(line["tenant"], line["exchange_id"], line["level"]) for line in broke] == [
        ("acme", acme, "WARNING"), ("bravo", bravo, "WARNING")]
    # Lines outside a request (start-up, shutdown) carry no request's fields.
    assert all("tenant" not in line for line in lines if line["logger"] == "uvicorn.error")
    # The fixture runs uvicorn with --no-access-log, and that still holds.
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]


def test_the_formatter_writes_exceptions_and_bound_fields():
    record = logging.LogRecord("visionrag.test", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()

    def format_in_a_request() -> str:
        bind(tenant="acme", exchange_id="abc")
        return JsonFormatter().format(record)

    line = json.loads(contextvars.copy_context().run(format_in_a_request))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "visionrag.test", "failed here")
    assert (line["tenant"], line["exchange_id"]) == ("acme", "abc")
    assert line["exception"].startswith("Traceback") and "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")
