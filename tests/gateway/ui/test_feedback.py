"""What the page tells a person (issue 21 §2): which filters emptied a result list and how to clear them,
the rank of a search hit (its raw score in a tooltip), which file was dropped, that a text file is not
an image, that an image does not decode; whole thumbnails; headings smaller than the page title; and no
focus ring on a heading the page focused itself."""

from __future__ import annotations

import time

import pytest

from tests.gateway.ui.conftest import Stack, picture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> list:
    now = time.time()
    exchanges = [stack.seed(q, f"An answer: {q.lower()}", picture(n), created_at=now - 100 + n)
                 for n, q in enumerate(["Explain this ER diagram.", "What does this floor plan show?"])]
    stack.wait_ingested()
    return exchanges


def drop(page, selector: str, name: str, mime: str, data: bytes) -> None:
    """Drop one file on `selector` as a person dragging it from their desktop would."""
    transfer = page.evaluate_handle("""([name, mime, bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
        return transfer; }""", [name, mime, list(data)])
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_an_empty_result_names_its_filters_and_clears_them(stack: Stack, seeded: list, open_page) -> None:
    page, _ = open_page(stack.url, route="#/search")
    page.get_by_label("From").fill("2001-01-01T10:00")
    page.get_by_label("To").fill("2001-01-02T10:00")
    page.get_by_label("Text").fill("diagram")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".status", has_text="0 result(s)").wait_for()
    note = page.locator(".filters-note")
    assert "Nothing matched" in note.inner_text() and "from " in note.inner_text() and "to " in note.inner_text()
    note.get_by_role("button", name="Clear filters").click()
    page.locator(".grid .card").first.wait_for()
    assert note.is_hidden()
    assert page.get_by_label("From").input_value() == ""

    # The same on browse, whose empty list no longer reads as "No exchanges yet".
    page.goto(f"{stack.url}/ui#/browse")
    page.locator(".grid .card").first.wait_for()
    page.get_by_label("Model").fill("no-such-model")
    page.get_by_role("button", name="Apply filters").click()
    page.locator(".status", has_text="No exchange matches these filters").wait_for()
    assert "model no-such-model" in page.locator(".filters-note").inner_text()
    page.get_by_role("button", name="Clear filters").click()
    page.locator(".status", has_text="exchange(s) shown").wait_for()


def test_hits_show_their_rank_and_keep_the_score_in_a_tooltip(stack: Stack, seeded: list, open_page) -> None:
    page, _ = open_page(stack.url, route="#/search")
    page.get_by_label("Text").fill("diagram")
    page.get_by_role("button", name="Search", exact=True).click()
    ranks = page.locator(".grid .card .rank")
    ranks.nth(1).wait_for()
    assert ranks.first.inner_text() == "#1 best match" and ranks.nth(1).inner_text() == "#2"
    assert ranks.first.get_attribute("title").startswith("fused score ")
    assert "score" not in page.locator(".grid").inner_text()
    page.get_by_label("Target").select_option("answer")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".status", has_text="target answer").wait_for()
    assert ranks.first.get_attribute("title").startswith("answer score ")


def test_the_picker_names_a_dropped_file_and_refuses_what_is_no_image(stack: Stack, open_page) -> None:
    page, _ = open_page(stack.url, route="#/search")
    picker = page.get_by_label("Search by image")
    drop(page, ".drop", "plan.png", "image/png", picture(3))
    page.locator(".drop .file-name", has_text="plan.png").wait_for()
    # The file input holds the dropped file, so it names it instead of "No file chosen".
    assert picker.evaluate("input => input.files[0]?.name") == "plan.png"

    drop(page, ".drop", "notes.txt", "text/plain", b"just words")
    page.locator(".drop .error", has_text="notes.txt is not an image").wait_for()
    assert picker.evaluate("input => input.files.length") == 0
    assert page.locator(".drop .file-name").count() == 0

    # Says it is a PNG, is not one: a sentence, not a broken-image icon.
    picker.set_input_files(files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG not really"}])
    page.locator(".drop .error", has_text="broken.png could not be read as an image").wait_for()
    assert page.locator(".drop img").count() == 0
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".error", has_text="Type some words or choose an image").wait_for()


def test_thumbnails_are_whole_and_headings_sit_under_the_title(stack: Stack, seeded: list, open_page) -> None:
    page, _ = open_page(stack.url, route=f"#/exchange/{seeded[0].id}")
    page.locator(".images img[src^='blob:']").wait_for()
    sizes = page.evaluate("""() => ({h1: parseFloat(getComputedStyle(document.querySelector('h1')).fontSize),
        h2: Math.max(...[...document.querySelectorAll('main h2')].map((h) => parseFloat(getComputedStyle(h).fontSize)))})""")
    assert sizes["h2"] < sizes["h1"], sizes
    assert "null" not in page.locator("main").inner_text().split()
    page.goto(f"{stack.url}/ui#/browse")
    page.locator(".grid .card img.thumb").first.wait_for()
    assert page.locator(".grid .card img.thumb").first.evaluate("img => getComputedStyle(img).objectFit") == "contain"


def test_a_heading_focused_after_navigation_has_no_ring(stack: Stack, seeded: list, open_page) -> None:
    page, _ = open_page(stack.url, route="#/browse")
    page.locator(".grid .card").first.wait_for()
    # By keyboard, where Chromium would otherwise draw :focus-visible on the focused heading.
    page.locator("nav a[data-route='search']").focus()
    page.keyboard.press("Enter")
    page.locator("h1", has_text="Search").wait_for()
    focused = page.evaluate("""() => [document.activeElement.tagName,
        getComputedStyle(document.activeElement).outlineStyle]""")
    assert focused == ["H1", "none"], focused
    # A control reached with Tab still shows its ring.
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
