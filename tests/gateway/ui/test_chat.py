"""Chat in the page against the real gateway and the session's real vLLM server (tiny VLM): the answer
streams in piece by piece, links to its exchange, and, asked again about the same image with memory
on, cites the first exchange as a source that links to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.ui.conftest import A, Stack, memory_env, picture
from tests.plugins.gateway_server import GatewayProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat_stack(vllm_server, clip_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("ui-chat-gateway")
    env = memory_env(clip_cache, vllm_server.base_url, data_dir)
    gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log").start()
    yield Stack(gateway)
    gateway.stop()


def ask(page, question: str, image: bytes) -> dict:
    """Ask in the chat form; returns the answer's successive lengths and the finished turn's links."""
    page.get_by_label("Image").set_input_files(files=[{"name": "plan.png", "mimeType": "image/png", "buffer": image}])
    page.get_by_label("Question").fill(question)
    page.get_by_label("Max tokens").fill("200")
    page.evaluate("""() => {
        window.__lengths = [];
        window.__deltas = 0;
        const answers = document.querySelector('section[aria-label="Conversation"]');
        new MutationObserver((records) => {
            const answer = answers.querySelector('.turn:last-child .answer');
            // While it streams (it is rendered as Markdown once it ends, which may shorten its text).
            if (answer && answer.getAttribute('aria-busy') === 'true') window.__lengths.push(answer.textContent.length);
            // Each streamed delta is appended to the answer as its own text node.
            for (const r of records) {
                if (r.target === answer) window.__deltas += [...r.addedNodes].filter((n) => n.nodeType === 3).length;
            }
        }).observe(answers, {subtree: true, childList: true, characterData: true});
    }""")
    turns = page.locator(".turn").count()
    page.get_by_role("button", name="Ask").click()
    # The new turn goes below the earlier ones once the image is read: wait for it, not the previous one.
    page.locator(".turn").nth(turns).wait_for()
    turn = page.locator(".turn").last
    turn.locator("a.exchange-link").wait_for(timeout=120_000)
    return {"lengths": page.evaluate("window.__lengths"), "deltas": page.evaluate("window.__deltas"), "turn": turn,
            "exchange_id": turn.locator("a.exchange-link").get_attribute("href").rsplit("/", 1)[-1]}


def test_streamed_chat_with_memory_cites_the_earlier_exchange(chat_stack: Stack, vllm_server, open_page) -> None:
    page, _ = open_page(chat_stack.url, route="#/chat")
    page.locator(f"select option[value='{vllm_server.model}']").wait_for(state="attached")

    first = ask(page, "What does this floor plan show?", picture(5))
    answer = first["turn"].locator(".answer").inner_text()
    assert answer.strip(), "no answer text"
    # Incremental: the answer is built delta by delta as events arrive (how many reach the page per
    # network read depends on timing, so the count of appended deltas is checked, not of repaints).
    lengths = [n for n in first["lengths"] if n]
    assert first["deltas"] >= 2 and lengths == sorted(lengths), (first["deltas"], lengths)
    assert page.locator(".turn .answer").last.get_attribute("aria-busy") == "false"
    chat_stack.wait_ingested()

    second = ask(page, "Same plan again: what does it show?", picture(5))
    status = second["turn"].locator(".status").inner_text()
    sources = second["turn"].locator("ol.sources a")
    if "Memory used" in status:
        # The sources header listed the first exchange: its thumbnail links to its page.
        sources.first.wait_for()
        ids = sources.evaluate_all("links => links.map(a => a.dataset.exchangeId)")
        assert first["exchange_id"] in ids
        link = second["turn"].locator(f"ol.sources a[data-exchange-id='{first['exchange_id']}']")
        link.locator("img[src^='blob:']").wait_for()
    else:  # the gateway does not put memory in answers (yet): no sources to show
        assert sources.count() == 0, status
    if os.environ.get("VISIONRAG_UI_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["VISIONRAG_UI_SCREENSHOTS"], "ui-chat.png"), full_page=True)

    # The answer's own exchange: the page shows what was asked and answered.
    second["turn"].locator("a.exchange-link").click()
    page.locator(".text.question", has_text="Same plan again").wait_for()
    page.locator(".images img[src^='blob:']").wait_for()
    recorded_sources = httpx.get(f"{chat_stack.url}/exchanges/{second['exchange_id']}", headers=A).json().get("sources")
    if "Memory used" in status and recorded_sources is not None:  # GET /exchanges/{id} lists them
        page.locator(f"ol.sources a[data-exchange-id='{first['exchange_id']}']").wait_for()
