"""Every view at phone width (390x844) and on a laptop (1280x800), light and dark: nothing scrolls
sideways, nothing logs an error, and Tab reaches the view's main controls. (`/` sending a browser here:
tests/gateway/api/test_openapi.py.)"""

from __future__ import annotations

import os
import time

import pytest

from tests.gateway.ui.conftest import Stack, enter_key, picture

pytestmark = pytest.mark.slow

PHONE = (390, 844)
LAPTOP = (1280, 800)
SIZES = [pytest.param(PHONE, id="phone"), pytest.param(LAPTOP, id="laptop")]

# The elements sticking out past the window's right edge, to say what overflowed when one does.
OVERFLOW = """() => {
    const width = window.innerWidth;
    const out = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 0.5 && el.getClientRects().length)
        .map((el) => `${el.tagName.toLowerCase()}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`);
    return {scroll: document.documentElement.scrollWidth, inner: width, out: out.slice(0, 12)};
}"""


def assert_fits(page, shot: str = "") -> None:
    fit = page.evaluate(OVERFLOW)
    assert fit["scroll"] <= fit["inner"], fit
    if shot and os.environ.get("VISIONRAG_UI_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["VISIONRAG_UI_SCREENSHOTS"], f"ui-{shot}.png"), full_page=True)


def tab_reaches(page, wanted: list[str], presses: int = 40) -> None:
    """Tab from the top of the page reaches each wanted control (a CSS selector)."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    missing = set(wanted)
    for _ in range(presses):
        page.keyboard.press("Tab")
        for selector in list(missing):
            if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
                missing.discard(selector)
        if not missing:
            return
    raise AssertionError(f"Tab never reached {sorted(missing)}")


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict:
    now = time.time()
    wide = stack.seed("Explain this ER diagram with a very long question " + "word " * 40,
                      "An answer " + "x" * 300, picture(2, size=(1200, 300)), created_at=now - 10)
    tall = stack.seed("What does this floor plan show?", "Three rooms.", picture(3, size=(200, 600)), created_at=now - 5)
    text_only = stack.seed("How many tokens fit?", "About four thousand.", None, created_at=now)
    stack.wait_ingested()
    return {"wide": wide, "tall": tall, "text_only": text_only}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_search_fits_and_is_keyboard_reachable(stack: Stack, seeded: dict, open_page, size, scheme) -> None:
    page, _ = open_page(stack.url, route="#/search", viewport=size, color_scheme=scheme)
    page.get_by_label("Text").fill("diagram")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(".grid .card img.thumb[src^='blob:']").first.wait_for()
    assert_fits(page, f"search-{size[0]}-{scheme}")
    # The page follows the system's colour scheme (its custom properties), form controls included.
    dark = page.evaluate("""() => [document.documentElement, document.querySelector('input[type=search]')].map((el) => {
        const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+/g).map(Number);
        return r + g + b < 200; })""")
    assert dark == [scheme == "dark"] * 2, dark
    tab_reaches(page, ["nav a[data-route='search']", "input[type='search']", "select[name='target']",
                       "input[type='file']", "input[name='time_from']", "button[type='submit']", ".grid .card a"])
    assert_fits(page)


@pytest.mark.parametrize("size", SIZES)
def test_browse_fits_and_is_keyboard_reachable(stack: Stack, seeded: dict, open_page, size) -> None:
    page, _ = open_page(stack.url, route="#/browse", viewport=size)
    page.locator(".grid .card img.thumb[src^='blob:']").first.wait_for()
    assert_fits(page, f"browse-{size[0]}")
    tab_reaches(page, ["nav a[data-route='browse']", "input[name='model']", "button[type='submit']", ".grid .card a"])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_an_exchange_fits_and_is_keyboard_reachable(stack: Stack, seeded: dict, open_page, size, scheme) -> None:
    page, _ = open_page(stack.url, route=f"#/exchange/{seeded['wide'].id}", viewport=size, color_scheme=scheme)
    page.locator(".images img[src^='blob:']").wait_for()
    assert_fits(page, f"exchange-{size[0]}-{scheme}")
    tab_reaches(page, ["a.similar", "button.quiet"])


@pytest.mark.parametrize("size", SIZES)
def test_chat_fits_and_is_keyboard_reachable(stack: Stack, open_page, size) -> None:
    """The chat view as it is (no model behind this gateway: its model list fails, and says so)."""
    page, recorded = open_page(stack.url, route="#/chat", viewport=size)
    page.locator("textarea").wait_for()
    page.locator(".error", has_text="Models").wait_for()
    assert_fits(page, f"chat-{size[0]}")
    tab_reaches(page, ["textarea", "input[type='file']"])
    recorded.errors[:] = [e for e in recorded.errors if "Failed to load resource" not in e]  # /v1/models


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_key_prompt_fits(stack: Stack, open_page, size, scheme) -> None:
    page, _ = open_page(stack.url, key=None, route="#/browse", viewport=size, color_scheme=scheme)
    page.locator("#key-dialog").wait_for(state="visible")
    assert_fits(page, f"key-{size[0]}-{scheme}")
    assert page.evaluate("document.activeElement.id") == "key-input"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    enter_key(page, "key-a")
    page.locator(".status", has_text="exchange(s) shown").wait_for()

