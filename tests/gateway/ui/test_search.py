"""Search, browse and an exchange's page in Chromium, against a real gateway with memory and keys on."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.gateway.ui.conftest import A, Stack, picture

pytestmark = pytest.mark.slow

QUESTIONS = ["What does this floor plan show?", "Which rooms face north?", "Explain this ER diagram.",
             "What is wrong with this circuit?", "Read the labels on this chart.", "Describe the blueprint."]


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict:
    now = time.time()
    exchanges = [stack.seed(q, f"An answer about picture {n}: {q.lower()}", picture(n), created_at=now - 600 + n)
                 for n, q in enumerate(QUESTIONS)]
    text_only = stack.seed("How many tokens fit in the context?", "About four thousand.", None, created_at=now)
    theirs = stack.seed("Bravo's secret diagram", "Bravo's secret answer", picture(1), tenant="bravo",
                        created_at=now + 1)
    stack.wait_ingested()
    return {"exchanges": exchanges, "text_only": text_only, "theirs": theirs}


def first_card(page) -> str:
    page.locator(".grid .card").first.wait_for()
    return page.locator(".grid .card").first.get_attribute("data-exchange-id")


def test_text_and_image_search_show_the_right_exchange_first(stack: Stack, seeded: dict, open_page) -> None:
    page, recorded = open_page(stack.url, route="#/search")
    target = seeded["exchanges"][2]

    page.get_by_label("Text").fill(target.answer)
    page.get_by_label("Target").select_option("answer")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".status", has_text="result(s)").wait_for()
    assert first_card(page) == target.id
    card = page.locator(".grid .card").first
    assert target.question in card.inner_text()
    # The thumbnail, alt = the question, came from the gateway at a small size.
    card.locator("img.thumb[src^='blob:']").wait_for()
    assert card.locator("img.thumb").get_attribute("alt") == target.question
    assert any(f"/images/{target.images[0].sha256}?size=256" in url for url in recorded.requests)
    assert not any(f"/images/{target.images[0].sha256}" == url.removeprefix(stack.url) for url in recorded.requests)

    # By an uploaded image: that exchange first, whatever the text box says.
    other = seeded["exchanges"][4]
    page.get_by_label("Target").select_option("image")
    page.get_by_label("Search by image").set_input_files(
        files=[{"name": "query.png", "mimeType": "image/png", "buffer": picture(4)}])
    page.locator(".drop .file-name", has_text="query.png").wait_for()
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".status", has_text="by image").wait_for()
    assert first_card(page) == other.id
    if os.environ.get("VISIONRAG_UI_SCREENSHOTS"):
        page.locator(".grid .card img.thumb[src^='blob:']").nth(3).wait_for()
        page.screenshot(path=os.path.join(os.environ["VISIONRAG_UI_SCREENSHOTS"], "ui-search.png"), full_page=True)

    # The other tenant's same picture never shows.
    ids = page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.exchangeId)")
    assert seeded["theirs"].id not in ids


def test_browse_is_newest_first_with_a_placeholder_for_text_only(stack: Stack, seeded: dict, open_page) -> None:
    page, _ = open_page(stack.url, route="#/browse")
    page.locator(".grid .card").nth(6).wait_for()
    ids = page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.exchangeId)")
    expected = [seeded["text_only"].id] + [e.id for e in reversed(seeded["exchanges"])]
    assert ids[: len(expected)] == expected
    assert seeded["theirs"].id not in ids
    first = page.locator(".grid .card").first
    assert first.locator(".placeholder").inner_text() == "text only"
    assert "Bravo" not in page.content()

    # Filters: one model only.
    stack.seed("A different model", "answer", None, model="other-model")
    page.get_by_label("Model").fill("other-model")
    page.get_by_role("button", name="Apply filters").click()
    page.locator(".status", has_text="1 exchange(s)").wait_for()


def test_exchange_page_shows_images_text_details_and_finds_similar(stack: Stack, seeded: dict, open_page) -> None:
    target = seeded["exchanges"][3]
    page, _ = open_page(stack.url, route=f"#/exchange/{target.id}")
    page.locator(".images img[src^='blob:']").wait_for()
    assert page.locator(".images img").get_attribute("alt") == target.question
    assert page.locator(".text.question").inner_text() == target.question
    assert page.locator(".text.answer").inner_text() == target.answer
    details = page.locator("dl.meta").inner_text()
    assert "tiny-vlm" in details and "12 prompt + 7 completion = 19 tokens" in details and "alice" in details
    exchange = httpx.get(f"{stack.url}/exchanges/{target.id}", headers=A).json()
    if exchange.get("sources"):
        assert page.locator("ol.sources a").count() == len(exchange["sources"])
    else:
        page.get_by_text("This answer cited no past exchanges.").wait_for()

    # Keyboard: "find similar" is a focusable link; Enter runs the image->image search.
    link = page.get_by_role("link", name="Find similar images")
    link.focus()
    page.keyboard.press("Enter")
    page.locator(".status", has_text="by image, target image").wait_for()
    assert first_card(page) == target.id
    assert page.evaluate("document.activeElement.tagName") == "H1"  # focus moved to the new view


def test_keyboard_and_screen_reader_basics(stack: Stack, seeded: dict, open_page) -> None:
    page, _ = open_page(stack.url, route="#/search")
    page.locator(".grid").wait_for(state="attached")
    # Every control has a label a screen reader announces.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('main input, main select, main textarea')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.outerHTML)""")
    assert unlabelled == []
    # Tab reaches the text box, the picker and the search button, each with a visible focus ring.
    reached = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("""() => { const el = document.activeElement;
            return [el.tagName, el.type || '', getComputedStyle(el).outlineStyle]; }"""))
        if reached[-1][:2] == ["BUTTON", "submit"]:
            break
    tags = {(tag, kind) for tag, kind, _ in reached}
    assert {("INPUT", "search"), ("INPUT", "file"), ("BUTTON", "submit")} <= tags, reached
    assert [r for r in reached if r[2] == "none"] == [], reached
    # Typing and Enter searches; result links are reachable and their images say what was asked.
    page.get_by_label("Text").focus()
    page.keyboard.type(seeded["exchanges"][0].answer)
    page.keyboard.press("Enter")
    page.locator(".grid .card img.thumb").first.wait_for()
    alts = page.locator(".grid img").evaluate_all("imgs => imgs.map(i => i.alt)")
    assert alts and all(alts), alts


def test_the_target_choices_are_the_vector_schemas(stack: Stack, open_page) -> None:
    """The page lists what /search takes (its OpenAPI enum, from the store's schema), "all" first."""
    from gateway.memory.store.schema import SCHEMA

    page, _ = open_page(stack.url, route="#/search")
    target = page.get_by_label("Target")
    target.locator(f"option[value='{SCHEMA.names[-1]}']").wait_for(state="attached")
    assert target.locator("option").evaluate_all("options => options.map(o => o.value)") == ["all", *SCHEMA.names]
    assert target.input_value() == "all"
