"""A minimal OpenAI-compatible upstream: fixed answers, as fast as aiohttp can send them.

For benchmarks (so the gateway's own cost is what is measured) and for tests of upstream
failures a real vLLM cannot be made to produce on demand (a stall, a broken stream).

    python -m bench.fake_upstream --port 9000 --chunks 32
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

MODEL = "fake-vlm"
MAX_MODEL_LEN = 8192
IMAGE_TOKENS = 64


def _completion(max_tokens: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "a diagram " * 8},
                     "finish_reason": "length", "stop_reason": None}],
        "usage": {"prompt_tokens": 64, "completion_tokens": max_tokens, "total_tokens": 64 + max_tokens},
        "prompt_logprobs": None, "kv_transfer_params": None,
    })


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }) + b"\n\n"


def make_app(chunks: int, stall_s: float = 0.0, break_after: int | None = None,
             chunk_delay_s: float = 0.0, fail_with: int | None = None) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if stall_s:
            await asyncio.sleep(stall_s)
        if fail_with:
            # What vLLM sends when a request crashes it: its own exception text.
            return web.json_response({"error": {
                "message": "'NoneType' object has no attribute 'split' in /opt/vllm/chat_utils.py",
                "type": "InternalServerError", "param": None, "code": fail_with}}, status=fail_with)
        if not body.get("stream"):
            return web.Response(body=_completion(body.get("max_tokens") or 16), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        for i in range(chunks):
            if break_after is not None and i == break_after:
                request.transport.close()  # an upstream that dies mid-answer
                return response
            if chunk_delay_s:
                await asyncio.sleep(chunk_delay_s)  # a model generating at a human-visible pace
            await response.write(_chunk({"content": f"tok{i} "}, "length" if i == chunks - 1 else None))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 64, "completion_tokens": chunks, "total_tokens": 64 + chunks}
            await response.write(b"data: " + orjson.dumps({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                "choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def health(_: web.Request) -> web.Response:
        return web.Response()

    async def tokenize(request: web.Request) -> web.Response:
        # vLLM's answer, shaped alike (token ids and all: the gateway parses the whole body): about four
        # bytes of text per token, as BPE tokenizers give on English, and an image as its placeholder
        # tokens (never its base64).
        body = await request.json()
        texts, images = [str(body.get("prompt") or "")], 0
        for message in body.get("messages") or []:
            content = message.get("content")
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
                if part.get("type") == "text":
                    texts.append(str(part.get("text")))
                else:
                    images += 1
        count = max(1, sum(len(t.encode()) for t in texts) // 4 + IMAGE_TOKENS * images)
        return web.json_response({"count": count, "max_model_len": MAX_MODEL_LEN,
                                  "tokens": list(range(count)), "token_strs": None})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/tokenize", tokenize)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--chunks", type=int, default=32, help="content chunks per streamed answer")
    parser.add_argument("--stall", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--break-after", type=int, default=None, help="drop the connection mid-stream")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument("--fail-with", type=int, default=None, help="answer every chat with this HTTP status")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.chunks, args.stall, args.break_after, args.chunk_delay, args.fail_with),
                host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
