"""What the page must never do: run markup from an exchange or a file name, keep a key anywhere but the
tab's sessionStorage, show another tenant's exchanges, or load anything from outside the gateway."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.ui.conftest import Stack, picture

pytestmark = pytest.mark.slow

HOSTILE_QUESTION = '<script>window.__pwned = "question"</script><b>bold?</b>'
HOSTILE_ANSWER = '<img src=x onerror="window.__pwned = \'answer\'">"><svg onload="window.__pwned=1">'


def test_headers_of_the_page_and_its_files(stack: Stack) -> None:
    for path in ("/ui", "/ui/static/js/main.js", "/ui/static/app.css"):
        response = httpx.get(stack.url + path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert "require-trusted-types-for 'script'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert httpx.get(stack.url + "/ui/static/js/main.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(stack.url + "/ui/static/../routes.py").status_code == 404
    assert httpx.get(stack.url + "/ui/static/nope.js").status_code == 404


def test_hostile_strings_render_as_text_and_run_nothing(stack: Stack, open_page) -> None:
    hostile = stack.seed(HOSTILE_QUESTION, HOSTILE_ANSWER, picture(7))
    stack.wait_ingested()
    page, recorded = open_page(stack.url, route="#/browse")
    card = page.locator(f".card[data-exchange-id='{hostile.id}']")
    card.wait_for()
    assert HOSTILE_QUESTION in card.inner_text()
    page.goto(f"{stack.url}/ui#/exchange/{hostile.id}")
    page.locator(".text.answer", has_text="onerror").wait_for()
    assert page.locator(".text.question").inner_text() == HOSTILE_QUESTION
    assert page.locator(".text.answer").inner_text() == HOSTILE_ANSWER
    assert page.locator(".images img").get_attribute("alt") == HOSTILE_QUESTION

    page.goto(f"{stack.url}/ui#/search")
    page.get_by_label("Text").fill(HOSTILE_ANSWER)
    page.get_by_label("Search by image").set_input_files(files=[{
        "name": '<img src=x onerror="window.__pwned=2">.png', "mimeType": "image/png", "buffer": picture(7)}])
    page.locator(".drop .file-name", has_text="onerror").wait_for()
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(f".card[data-exchange-id='{hostile.id}']").first.wait_for()
    # Nothing became an element: no <script>, <b>, <svg> or <img src=x> anywhere in the page.
    assert page.locator("main script, main b, main svg, img[src='x']").count() == 0
    # And the page's own guard: assigning HTML as a string throws under its Trusted Types policy.
    refused = page.evaluate("""() => { try { document.body.innerHTML = '<i>x</i>'; return false; }
                                       catch (e) { return e instanceof TypeError; } }""")
    assert refused
    assert page.evaluate("window.__violations") == ["require-trusted-types-for trusted-types-sink"]
    page.evaluate("window.__violations = []")  # that one was this test's own
    recorded.errors[:] = [e for e in recorded.errors if "TrustedHTML" not in e]
    assert page.evaluate("window.__pwned") is None  # (the fixture checks again at the end)


def test_keys_a_wrong_key_is_refused_and_tenants_never_mix(stack: Stack, open_page) -> None:
    mine = stack.seed("Acme's own question", "acme answer", picture(2), tenant="acme")
    theirs = stack.seed("Bravo-only question", "bravo answer", picture(2), tenant="bravo")
    stack.wait_ingested()

    page, recorded = open_page(stack.url, key=None, route="#/browse")
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#key-input", "not-a-key")
    page.keyboard.press("Enter")
    # Refused: the dialog comes back, saying so.
    page.locator("#key-error", has_text="refused").wait_for()
    assert page.locator(".grid .card").count() == 0
    page.fill("#key-input", "key-a")
    page.keyboard.press("Enter")
    page.locator(f".card[data-exchange-id='{mine.id}']").wait_for()
    assert theirs.id not in page.locator(".grid .card").evaluate_all("cs => cs.map(c => c.dataset.exchangeId)")
    assert "Bravo-only" not in page.content()
    # The same picture by image search: only acme's.
    page.goto(f"{stack.url}/ui#/search")
    page.get_by_label("Search by image").set_input_files(
        files=[{"name": "q.png", "mimeType": "image/png", "buffer": picture(2)}])
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(f".card[data-exchange-id='{mine.id}']").wait_for()
    assert "Bravo-only" not in page.content()
    # Bravo's exchange by its URL: the gateway answers 404 to acme's key, and the page says so.
    page.goto(f"{stack.url}/ui#/exchange/{theirs.id}")
    page.locator(".error", has_text="No exchange").wait_for()
    recorded.errors.clear()  # that 404 is the expected console error

    # The key: in this tab's sessionStorage only, never in a URL, a cookie or localStorage.
    assert page.evaluate("sessionStorage.getItem('visionrag.apiKey')") == "key-a"
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    assert not [u for u in recorded.requests if "key-a" in u]
    other_tab = page.context.new_page()
    other_tab.goto(f"{stack.url}/ui#/browse")
    other_tab.locator("#key-dialog").wait_for(state="visible")  # a new tab asks again


def test_forget_from_the_exchange_page(stack: Stack, open_page) -> None:
    doomed = stack.seed("Forget me", "soon gone", picture(6))
    stack.wait_ingested()
    page, _ = open_page(stack.url, route=f"#/exchange/{doomed.id}")
    page.get_by_role("button", name="Forget this exchange").click()
    page.get_by_role("button", name="Yes, forget it everywhere").click()
    page.wait_for_url("**/ui#/browse")
    page.locator(".status", has_text="exchange(s) shown").wait_for()
    assert doomed.id not in page.locator(".grid .card").evaluate_all("cs => cs.map(c => c.dataset.exchangeId)")
    assert httpx.get(f"{stack.url}/exchanges/{doomed.id}", headers={"Authorization": "Bearer key-a"}).status_code == 404
