"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python).

Playwright's own browser download is not reachable here, so it launches the system browser
(`make ui-test-deps` installs it). Each page records every request it makes, every page error and
every CSP violation; a test fails if the page asked anything outside the gateway or broke a rule.
Exchanges are seeded as the CLI's ingest does it: journal rows and image blobs written beside a
running gateway (a real uvicorn process with memory on and the tiny CLIP), which embeds them.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from gateway.journal import Exchange, ImageRef
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from tests.gateway.memory import conftest as memory_fixtures
from tests.plugins.gateway_server import GatewayProcess, free_port

clip_cache = memory_fixtures.clip_cache  # the tiny CLIP, for the gateways here
ROOT = Path(__file__).resolve().parents[3]
KEYS = "acme:key-a,bravo:key-b"
A = {"Authorization": "Bearer key-a"}
PALETTE = [(231, 76, 60), (46, 134, 193), (39, 174, 96), (243, 156, 18), (142, 68, 173), (22, 160, 133),
           (52, 73, 94), (211, 84, 0)]


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    result = subprocess.run(["make", "-C", str(ROOT), "ui-test-deps"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not shutil.which("chromium"):
        pytest.fail(f"Debian's chromium is missing; run `make ui-test-deps`:\n{result.stderr[-2000:]}")
    return shutil.which("chromium") or ""


# Package scope, not session: Playwright's sync API keeps its event loop marked as running in this
# thread while it is started, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="package")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in a container, where Chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def picture(n: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A distinct little drawing per n (colours and shapes), as PNG."""
    image = Image.new("RGB", size, PALETTE[n % len(PALETTE)])
    draw = ImageDraw.Draw(image)
    for k in range(3 + n % 4):
        x, y = (37 * (n + 1) * (k + 1)) % size[0], (53 * (n + 2) * (k + 1)) % size[1]
        colour = PALETTE[(n + k + 3) % len(PALETTE)]
        shape = draw.ellipse if (n + k) % 2 else draw.rectangle
        shape((x, y, x + 40 + 9 * k, y + 30 + 7 * n % 50), fill=colour, outline=(255, 255, 255), width=3)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Stack:
    gateway: GatewayProcess

    @property
    def url(self) -> str:
        return self.gateway.url

    def seed(self, question: str, answer: str, image: bytes | None = None, *, tenant: str = "acme",
             created_at: float | None = None, model: str = "tiny-vlm") -> Exchange:
        """One exchange as the gateway would have recorded it (journal row + image blob)."""
        blobs = DiskBlobStore(self.gateway.data_dir / "images")
        refs = [ImageRef(blobs.put(image), "image/png")] if image else []
        exchange = Exchange(
            id=uuid.uuid4().hex, created_at=created_at or time.time(), endpoint="chat.completions",
            model=model, tenant=tenant, user="alice", messages=[{"role": "user", "text": question}],
            images=refs, answer=answer, finish_reason="stop",
            usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}, latency_ms=42.0,
        )
        journal = SQLiteJournal(self.gateway.data_dir / "journal.sqlite3")
        journal.append(exchange)
        journal.close()
        return exchange

    def wait_ingested(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        for headers in (A, {"Authorization": "Bearer key-b"}):
            while httpx.get(self.url + "/memory/stats", headers=headers, timeout=10).json()["backlog"]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"backlog not drained\n{self.gateway.log_tail()}")
                time.sleep(0.1)


def memory_env(clip_dir: Path, upstream: str, data_dir: Path) -> dict[str, str]:
    return {
        "VISIONRAG_UPSTREAM_URLS": upstream,
        "VISIONRAG_DATA_DIR": str(data_dir),
        "VISIONRAG_MEMORY_ENABLED": "true",
        "VISIONRAG_FASTEMBED_CACHE_DIR": str(clip_dir),
        "VISIONRAG_INGEST_POLL_INTERVAL_S": "0.1",
        "VISIONRAG_API_KEYS": KEYS,
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def stack(clip_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway with memory and API keys on; no model behind it (these tests do not chat)."""
    data_dir = tmp_path_factory.mktemp("ui-gateway")
    env = memory_env(clip_cache, f"http://127.0.0.1:{free_port()}/v1", data_dir)
    gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log").start()
    yield Stack(gateway)
    gateway.stop()


@dataclass
class Recorded:
    """What a page did: every request URL, page errors, CSP violations and dialogs (alert, ...)."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def outside(self, origin: str) -> list[str]:
        return [u for u in self.requests if not (u == origin or u.startswith((origin + "/", "blob:", "data:")))]


@pytest.fixture
def open_page(browser, request: pytest.FixtureRequest):
    """open_page(base_url, key=None, route, viewport=(w, h), color_scheme, **context_options) -> (page,
    recorded). With a key, answers the page's key prompt; context_options go to Playwright's new_context
    (is_mobile, has_touch, ...)."""
    contexts = []
    records: list[tuple[str, Recorded]] = []

    def open_(base_url: str, key: str | None = "key-a", route: str = "", *,
              viewport: tuple[int, int] = (1280, 900), color_scheme: str = "light", **context_options):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                      color_scheme=color_scheme, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        recorded = Recorded()
        records.append((base_url, recorded))
        page.on("request", lambda r: recorded.requests.append(r.url))
        page.on("pageerror", lambda e: recorded.errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: recorded.errors.append(f"console: {m.text}") if m.type == "error"
                and "401" not in m.text else None)  # a 401 before the key is entered is expected
        page.on("dialog", lambda d: (recorded.dialogs.append(d.message), d.dismiss()))
        page.goto(f"{base_url}/ui{route}")
        # The page reports CSP violations it sees (inline script or style, a foreign URL).
        page.evaluate("""() => document.addEventListener('securitypolicyviolation',
            (e) => { window.__violations = (window.__violations || []).concat(e.violatedDirective + ' ' + e.blockedURI); })""")
        if key is not None:
            enter_key(page, key)
        return page, recorded

    yield open_
    for base_url, recorded in records:
        assert not recorded.outside(base_url), f"requests outside the gateway: {recorded.outside(base_url)}"
        assert not recorded.dialogs, f"the page opened dialogs: {recorded.dialogs}"
    for context in contexts:
        for page in context.pages:
            assert page.evaluate("window.__violations || []") == [], "CSP violations"
            assert page.evaluate("window.__pwned") is None, "a hostile string ran"
        context.close()
    for _, recorded in records:
        assert not recorded.errors, recorded.errors


def enter_key(page, key: str) -> None:
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.fill("#key-input", key)
    page.keyboard.press("Enter")
    dialog.wait_for(state="hidden")
