"""The page against a gateway with memory off (VISIONRAG_MEMORY_ENABLED=false, issue 17 §4): browsing,
an exchange's page, its images and forgetting work from the journal alone; search and "find similar"
say that they need memory instead of failing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.ui.conftest import KEYS, A, Stack, picture
from tests.plugins.gateway_server import GatewayProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway with API keys on and memory off; no model behind it (these tests do not chat)."""
    data_dir = tmp_path_factory.mktemp("ui-gateway-memory-off")
    env = {"VISIONRAG_UPSTREAM_URLS": f"http://127.0.0.1:{free_port()}/v1", "VISIONRAG_DATA_DIR": str(data_dir),
           "VISIONRAG_MEMORY_ENABLED": "false", "VISIONRAG_API_KEYS": KEYS}
    gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log").start()
    yield Stack(gateway)
    gateway.stop()


def test_features_say_memory_is_off(stack_off: Stack) -> None:
    assert httpx.get(stack_off.url + "/ui/features").status_code == 401
    assert httpx.get(stack_off.url + "/ui/features", headers=A).json() == {"memory": False}


def test_browse_and_an_exchange_work_and_similar_images_say_why_not(stack_off: Stack, open_page) -> None:
    first = stack_off.seed("What does this floor plan show?", "Three rooms and a hall.", picture(1))
    second = stack_off.seed("Which rooms face north?", "The kitchen.", picture(2))
    stack_off.seed("Bravo's secret diagram", "Bravo's secret answer", picture(3), tenant="bravo")
    page, recorded = open_page(stack_off.url, route="#/browse")
    page.locator(".grid .card").nth(1).wait_for()
    ids = page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.exchangeId)")
    assert ids == [second.id, first.id] and "Bravo" not in page.content()
    page.locator(".grid .card img.thumb[src^='blob:']").first.wait_for()
    assert any(f"/images/{second.images[0].sha256}?size=256" in url for url in recorded.requests)

    page.locator(f".card[data-exchange-id='{first.id}'] a").click()
    page.locator(".images img[src^='blob:']").wait_for()
    assert page.locator(".text.answer").inner_text() == "Three rooms and a hall."
    page.get_by_text("Finding similar images needs memory, which is off on this gateway.").wait_for()
    assert page.get_by_role("link", name="Find similar images").count() == 0

    # Forgetting needs no memory either: gone from the page and from the gateway.
    page.get_by_role("button", name="Forget this exchange").click()
    page.get_by_role("button", name="Yes, forget it everywhere").click()
    page.locator(".grid .card").first.wait_for()
    assert page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.exchangeId)") == [second.id]
    assert httpx.get(f"{stack_off.url}/exchanges/{first.id}", headers=A).status_code == 404
    assert httpx.get(f"{stack_off.url}/images/{first.images[0].sha256}", headers=A).status_code == 404


def test_search_is_shown_disabled_with_a_note(stack_off: Stack, open_page) -> None:
    sha = stack_off.seed("What is in the chart?", "Revenue by quarter.", picture(4)).images[0].sha256
    page, recorded = open_page(stack_off.url, route=f"#/search?similar={sha}")
    note = page.get_by_role("note")
    note.wait_for()
    assert "Search needs memory, which is off on this gateway" in note.inner_text()
    assert page.get_by_label("Text").is_disabled()
    assert page.get_by_role("button", name="Search", exact=True).is_disabled()
    # Nothing was searched (nor the similar image's original downloaded for it).
    assert not any(url.endswith("/search") for url in recorded.requests)
    assert not any(url.endswith(f"/images/{sha}") for url in recorded.requests)


def test_the_data_dir_has_no_vector_store(stack_off: Stack) -> None:
    assert not Path(stack_off.gateway.data_dir / "qdrant").exists()
