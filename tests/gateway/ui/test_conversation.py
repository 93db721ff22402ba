"""The Chat view as a conversation, in Chromium, against a real gateway (memory on, the tiny CLIP) whose
model server is a scripted double: it records every chat request the gateway forwards and streams the
answers a test gives it, at the pace the test asks for. What the page sends (the history of a follow-up
question), how it shows answers (Markdown, citations and their cards, hostile Markdown inert) and its
controls (stop, copy, retry, new chat, the memory toggle) are checked here; test_chat.py chats with the
real vLLM."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from playwright.sync_api import expect

from tests.gateway.ui.conftest import Stack, memory_env, picture
from tests.plugins.gateway_server import GatewayProcess, free_port

pytestmark = pytest.mark.slow

MODEL = "scripted-vlm"


@dataclass
class Answer:
    """One scripted chat answer: the text in `chunks` pieces `delay_s` apart, or an HTTP error status."""

    text: str = "All right."
    chunks: int = 4
    delay_s: float = 0.0
    status: int = 200


@dataclass
class ScriptedUpstream:
    """vLLM's OpenAI API as far as the gateway uses it here, in a thread of its own."""

    port: int = field(default_factory=free_port)
    answers: deque[Answer] = field(default_factory=deque)
    chats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.chats.append(body)
            answer = self.answers.popleft() if self.answers else Answer()
            if answer.status != 200:
                return web.json_response({"error": {"message": "the model crashed", "type": "InternalServerError",
                                                    "code": answer.status}}, status=answer.status)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            size = -(-len(answer.text) // answer.chunks)
            pieces = [answer.text[i:i + size] for i in range(0, len(answer.text), size)]
            try:
                for i, piece in enumerate(pieces):
                    if answer.delay_s:
                        await asyncio.sleep(answer.delay_s)
                    await response.write(b"data: " + orjson.dumps({
                        "id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                        "choices": [{"index": 0, "delta": {"content": piece},
                                     "finish_reason": "stop" if i == len(pieces) - 1 else None}]}) + b"\n\n")
                await response.write(b"data: [DONE]\n\n")
            except ConnectionResetError:
                pass  # the page stopped the answer: the gateway dropped this stream
            return response

        async def models(_: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model",
                                                                  "max_model_len": 8192}]})

        async def tokenize(request: web.Request) -> web.Response:
            body = await request.json()
            count = max(1, len(orjson.dumps(body)) // 4)
            return web.json_response({"count": count, "max_model_len": 8192, "tokens": list(range(count)),
                                      "token_strs": None})

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        async def health(_: web.Request) -> web.Response:
            return web.Response()

        app.router.add_get("/health", health)
        app.router.add_post("/tokenize", tokenize)
        return app

    def start(self) -> ScriptedUpstream:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            self.runner = web.AppRunner(self.app())
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            ready.set()

        def main() -> None:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the scripted upstream did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    scripted = ScriptedUpstream().start()
    yield scripted
    scripted.stop()


@pytest.fixture(scope="module")
def scripted_stack(upstream: ScriptedUpstream, clip_cache: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("ui-conversation-gateway")
    env = memory_env(clip_cache, upstream.base_url, data_dir)
    gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log").start()
    yield Stack(gateway)
    gateway.stop()


@pytest.fixture
def chat(scripted_stack: Stack, upstream: ScriptedUpstream, open_page):
    """A chat page with its model list loaded; the upstream's script and record start empty."""
    upstream.answers.clear()
    upstream.chats.clear()

    def open_(viewport: dict[str, int] | None = None, **context_options):
        page, recorded = open_page(scripted_stack.url, route="#/chat", **context_options)
        if viewport:
            page.set_viewport_size(viewport)
        page.locator(f"select option[value='{MODEL}']").wait_for(state="attached")
        return page, recorded

    return open_


def send(page, question: str, image: bytes | None = None, *, wait: bool = True):
    """Ask in the composer; returns the new turn (finished unless wait=False)."""
    if image is not None:
        page.get_by_label("Image").set_input_files(files=[{"name": "plan.png", "mimeType": "image/png",
                                                           "buffer": image}])
    page.get_by_label("Question").fill(question)
    turns = page.locator(".thread .turn").count()
    page.get_by_role("button", name="Ask").click()
    turn = page.locator(".thread .turn").nth(turns)
    turn.wait_for()
    if wait:
        turn.locator(".msg-actions button, .error:not(:empty)").first.wait_for()
        expect(turn).not_to_have_attribute("data-state", "streaming")
    return turn


def user_texts(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


def has_image(message: dict[str, Any]) -> bool:
    return not isinstance(message["content"], str) and any(p.get("type") == "image_url" for p in message["content"])


ANSWER_1 = ("The plan has **two rooms** [1] and a `door`.\n\n- kitchen\n- hall\n\n```python\nprint('<b>x</b>')\n```\n\n"
            "See [the docs](https://example.org/plan).")


def test_a_two_turn_conversation_sends_its_history_and_cites_with_cards(
        chat, scripted_stack: Stack, upstream: ScriptedUpstream) -> None:
    earlier = scripted_stack.seed("Which rooms does the red plan have?", "Two rooms.", picture(3))
    scripted_stack.wait_ingested()
    page, _ = chat()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    upstream.answers.extend([Answer(ANSWER_1), Answer("The hall is *long*.")])

    first = send(page, "What does this plan show?", picture(3))
    # The user's turn: the picture as a blob: thumbnail, and the text; the form is empty again.
    first.locator(".msg.user img.msg-image[src^='blob:']").wait_for()
    assert first.locator(".msg.user .msg-text").inner_text() == "What does this plan show?"
    assert page.get_by_label("Question").input_value() == ""
    assert page.locator(".drop .preview img").count() == 0
    # The answer as Markdown: emphasis, inline code, a list, a code block, a safe link.
    answer = first.locator(".answer")
    assert answer.locator("strong").inner_text() == "two rooms"
    assert answer.locator("code").first.inner_text() == "door"
    assert answer.locator("ul > li").all_inner_texts() == ["kitchen", "hall"]
    assert answer.locator("pre > code.language-python").inner_text() == "print('<b>x</b>')"
    link = answer.locator("a[href='https://example.org/plan']")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow" and link.inner_text() == "the docs"

    status = first.locator(".status").inner_text()
    if "Memory used" in status:
        # [1] links to the cited exchange; its card (thumbnail and question) shows on keyboard focus.
        cite = answer.locator(f"a.cite[data-exchange-id='{earlier.id}']")
        assert cite.inner_text() == "[1]" and cite.get_attribute("href") == f"#/exchange/{earlier.id}"
        card = first.locator(".cite-card")
        assert not card.is_visible()
        cite.focus()
        card.wait_for(state="visible")
        card.locator("img[src^='blob:']").wait_for()
        assert "Which rooms does the red plan have?" in card.inner_text()
        assert card.get_attribute("id") == cite.get_attribute("aria-describedby")
        page.keyboard.press("Escape")
        card.wait_for(state="hidden")
        answer.locator("strong").hover()
        cite.hover()
        card.wait_for(state="visible")
        page.mouse.move(0, 0)
        page.keyboard.press("Escape")
        card.wait_for(state="hidden")
        first.locator(f"ol.sources a[data-exchange-id='{earlier.id}']").wait_for()
    else:  # memory found nothing close enough: [1] stays text
        assert answer.locator("a.cite").count() == 0, status

    # Copy: the answer's Markdown, as the model wrote it.
    first.get_by_role("button", name="Copy").click()
    first.locator(".copy-note", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == ANSWER_1

    second = send(page, "And the hall?")
    assert second.locator(".msg.user img").count() == 0
    assert second.locator(".answer em").inner_text() == "long"
    # The follow-up carried the conversation: question, answer, follow-up; the image on its own turn.
    sent = [m for m in upstream.chats[-1]["messages"] if m["role"] != "system"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert user_texts(sent[0]).endswith("What does this plan show?") and has_image(sent[0])
    assert sent[1]["content"] == ANSWER_1
    assert user_texts(sent[2]).endswith("And the hall?")

    # New chat: an empty thread, and the next question goes alone.
    page.get_by_role("button", name="New chat").click()
    assert page.locator(".thread .turn").count() == 0
    send(page, "Hello again")
    assert [m["role"] for m in upstream.chats[-1]["messages"] if m["role"] != "system"] == ["user"]


def test_stop_keeps_what_arrived_and_an_error_retries_in_place(chat, upstream: ScriptedUpstream) -> None:
    page, recorded = chat()
    upstream.answers.extend([Answer("word " * 60, chunks=60, delay_s=0.1), Answer(status=500),
                             Answer("Better now.")])
    turn = send(page, "Tell me a long story", picture(1), wait=False)
    turn.locator(".answer", has_text="word word").wait_for()
    page.get_by_role("button", name="Stop").click()
    expect(turn).to_have_attribute("data-state", "stopped")
    assert "Stopped" in turn.locator(".status").inner_text()
    kept = turn.locator(".answer").inner_text()
    assert kept.startswith("word") and len(kept) < len("word " * 60)
    assert not page.get_by_role("button", name="Stop").is_visible()
    assert page.get_by_role("button", name="Ask").is_enabled()

    failed = send(page, "Why?")
    expect(failed).to_have_attribute("data-state", "error")
    assert failed.locator(".error").inner_text()
    # The stopped answer went with the follow-up, as far as it got.
    sent = [m for m in upstream.chats[-1]["messages"] if m["role"] != "system"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"] and sent[1]["content"].startswith("word")
    failed.get_by_role("button", name="Retry").click()
    expect(failed).to_have_attribute("data-state", "done")
    assert failed.locator(".answer").inner_text() == "Better now."
    assert failed.locator(".error").inner_text() == ""
    assert [user_texts(m) for m in upstream.chats[-1]["messages"]][-1].endswith("Why?")
    assert len(upstream.chats[-1]["messages"]) == len(upstream.chats[-2]["messages"])
    # The browser logs the failed request itself: that one was this test's own.
    recorded.errors[:] = [e for e in recorded.errors if "status of 5" not in e]


HOSTILE = """<script>window.__pwned = "script"</script>

<img src=x onerror="window.__pwned = 'img'">

<div onclick="window.__pwned = 'div'">raw block</div>

Links: [js](javascript:window.__pwned=1) [data](data:text/html,<script>window.__pwned=2</script>) \
[vb](vbscript:msgbox) <a href="javascript:window.__pwned=3">inline</a> ![pic](https://evil.example/p.png) \
![d](data:image/png;base64,iVBORw0KGgo=) <https://example.org/ok>
"""


def test_hostile_markdown_renders_inert(chat, upstream: ScriptedUpstream) -> None:
    page, _ = chat()
    upstream.answers.append(Answer(HOSTILE))
    answer = send(page, "Say something nasty").locator(".answer")
    assert answer.locator("script, img, div[onclick], iframe, object, embed").count() == 0
    hrefs = answer.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://evil.example/p.png", "https://example.org/ok"], hrefs
    text = answer.inner_text()
    for shown in ("<script>", "onerror", "raw block", "js", "data", "inline", "image: pic"):
        assert shown in text, shown
    page.wait_for_timeout(300)  # an onerror would have fired by now (the fixture checks __pwned)


def test_on_a_touch_screen_a_first_tap_shows_the_card_and_a_second_follows_the_link(
        chat, scripted_stack: Stack, upstream: ScriptedUpstream) -> None:
    earlier = scripted_stack.seed("Where is the green door?", "On the left.", picture(4))
    scripted_stack.wait_ingested()
    page, _ = chat({"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    upstream.answers.append(Answer("The door is green [1]."))
    page.get_by_label("Image").set_input_files(files=[{"name": "d.png", "mimeType": "image/png", "buffer": picture(4)}])
    page.get_by_label("Question").fill("Where is the door?")
    page.get_by_label("Question").press("Enter")  # Enter sends (Shift+Enter would start a new line)
    turn = page.locator(".thread .turn").first
    expect(turn).to_have_attribute("data-state", "done")
    if "Memory used" not in turn.locator(".status").inner_text():
        pytest.skip("memory found nothing close enough to cite")
    cite = turn.locator(f"a.cite[data-exchange-id='{earlier.id}']")
    cite.tap()
    turn.locator(".cite-card").wait_for(state="visible")
    assert page.evaluate("location.hash") == "#/chat"
    turn.locator(".cite-card", has_text="Where is the green door?").wait_for()
    cite.tap()
    page.wait_for_function(f"location.hash === '#/exchange/{earlier.id}'")


def test_the_memory_toggle_is_remembered_for_the_tab(chat) -> None:
    page, _ = chat()
    memory = page.get_by_label("use past exchanges")
    assert memory.is_checked()
    memory.uncheck()
    page.reload()
    page.locator(f"select option[value='{MODEL}']").wait_for(state="attached")
    assert not page.get_by_label("use past exchanges").is_checked()


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}, {"width": 1280, "height": 800}])
def test_a_conversation_fits_the_width(chat, upstream: ScriptedUpstream, viewport: dict[str, int]) -> None:
    page, _ = chat(viewport)
    long_line = "x = '" + "a" * 300 + "'"
    upstream.answers.append(Answer(f"A long word: {'b' * 200}\n\n```\n{long_line}\n```\n\n| a | b |\n|---|---|\n"
                                   f"| {'c' * 80} | {'d' * 80} |\n"))
    send(page, "A question with a long word: " + "q" * 150, picture(2))
    # Nothing in the view is wider than the window (what scrolls inside its own box, a code block or a
    # table, is not). The header is every view's: tests/gateway/ui of the other views check it.
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')].filter((e) => {
        for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
            if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return false;
        }
        return e.getBoundingClientRect().right > innerWidth + 0.5;
    }).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)""")
    assert wide == [], (wide, viewport)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    if os.environ.get("VISIONRAG_UI_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["VISIONRAG_UI_SCREENSHOTS"],
                                          f"ui-conversation-{viewport['width']}.png"), full_page=True)
    # Keyboard: the composer and the answer's actions are reachable with Tab.
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.textContent.trim() || document.activeElement.name || ''"))
    assert {"Copy", "Ask", "question", "New chat"} <= reached, reached
