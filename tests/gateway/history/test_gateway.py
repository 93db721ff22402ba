"""History in the whole gateway (gateway.api.app, in process: tests.gateway.inprocess), memory off and on
(issue 17 §4): GET /exchanges, GET /exchanges/{id}, /images/{sha256}, forgetting and retention answer
alike from the journal and the blob store, and only search and the memory stats need the vectors.

Exchanges are recorded as the CLI's ingest records them: journal rows and image blobs written beside
the running app (the same data dir). "Gone" is checked as tests.gateway.memory.test_forget checks it:
no file under the data dir holds the question's, the answer's or the image's bytes, and none is named
by the image's hash (the original, its thumbnails).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import Exchange, ImageRef, open_blobs, open_journal
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.gateway.inprocess import gateway, settings_for
from tests.gateway.memory import conftest as memory_fixtures
from tests.gateway.memory.conftest import noise_png
from tests.gateway.memory.test_forget import found_in, needles_of, secret

clip_cache = memory_fixtures.clip_cache  # the tiny CLIP (and the text models), for memory on

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
DAY_S = 86_400.0


@pytest.fixture(params=["memory-off", "memory-on"])
def memory(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings of either: memory off (the default of tests.gateway.inprocess), or on with the tiny CLIP."""
    if request.param == "memory-off":
        return {}
    return {"memory_enabled": True, "fastembed_cache_dir": request.getfixturevalue("clip_cache"),
            "ingest_poll_interval_s": 0.05}


def record(settings: Settings, question: str, answer: str, images: list[bytes], *, tenant: str = "acme",
           user: str | None = None, created_at: float | None = None, exchange_id: str | None = None) -> Exchange:
    """One exchange as the gateway would have recorded it (journal row + image blobs)."""
    blobs = open_blobs(settings)
    exchange = Exchange(
        id=exchange_id or uuid.uuid4().hex, created_at=created_at or time.time(), endpoint="chat.completions",
        model="tiny-vlm", tenant=tenant, user=user, messages=[{"role": "user", "text": question}],
        images=[ImageRef(blobs.put(png), "image/png") for png in images], answer=answer,
        finish_reason="stop", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        latency_ms=1.0)
    journal = open_journal(settings)
    journal.append(exchange)
    journal.close()
    return exchange


def named(root: Path, sha: str) -> list[str]:
    """The files under `root` named by an image's hash: the original and its thumbnails."""
    return [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and sha in path.name]


async def until(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def settled(settings: Settings):
    """Whether every recorded deletion is finished (the finisher's part: files, points, the journal's WAL)."""
    async def check() -> bool:
        journal = open_journal(settings)
        try:
            return not journal.forgetting()
        finally:
            journal.close()
    return check


def test_exchanges_and_images_are_served_from_the_journal(tmp_path: Path, memory: dict[str, Any]) -> None:
    settings = settings_for(tmp_path, api_keys="acme:key-a,bravo:key-b", **memory)
    png = noise_png(1)

    async def scenario() -> None:
        async with gateway(settings) as (_, client):
            older = record(settings, "what is this?", "a cat", [png], user="zed", created_at=time.time() - 60)
            newer = record(settings, "and this?", "text only", [])
            theirs = record(settings, "theirs", "theirs", [noise_png(2)], tenant="bravo")
            sha = older.images[0].sha256

            page = (await client.get("/exchanges", headers=A)).json()
            assert [row["id"] for row in page["data"]] == [newer.id, older.id] and page["has_more"] is False
            assert page["data"][1]["images"][0]["url"].endswith(f"/images/{sha}")
            assert (await client.get("/exchanges", headers=A, params={"user": "zed"})).json()["data"][0]["id"] == older.id
            assert (await client.get("/exchanges", headers=A, params={"cursor": "nope"})).status_code == 400
            assert (await client.get("/exchanges")).status_code == 401

            one = await client.get(f"/exchanges/{older.id}", headers=A)
            assert one.status_code == 200, one.text
            assert one.json()["question"] == "what is this?" and one.json()["answer"] == "a cat"
            assert one.json()["usage"]["total_tokens"] == 5
            hidden = await client.get(f"/exchanges/{theirs.id}", headers=A)
            assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "exchange_not_found"

            image = await client.get(f"/images/{sha}", headers=A)
            assert image.status_code == 200 and image.content == png
            assert image.headers["content-type"] == "image/png" and image.headers["etag"] == f'"{sha}"'
            again = await client.get(f"/images/{sha}", headers={**A, "If-None-Match": f'"{sha}"'})
            assert again.status_code == 304
            thumb = await client.get(f"/images/{sha}", headers=A, params={"size": 64})
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
            assert (await client.get(f"/images/{sha}", headers=B)).status_code == 404
            assert (await client.get(f"/images/{theirs.images[0].sha256}", headers=A)).status_code == 404

            # Only what needs the vectors answers memory_disabled.
            search = await client.post("/search", headers=A, json={"text": "a cat"})
            stats = await client.get("/memory/stats", headers=A)
            if memory:
                assert search.status_code == 200 and stats.status_code == 200
            else:
                for response in (search, stats):
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "memory_disabled"

    asyncio.run(scenario())


def test_forgetting_deletes_the_rows_the_images_and_their_thumbnails(tmp_path: Path,
                                                                     memory: dict[str, Any]) -> None:
    settings = settings_for(tmp_path, api_keys="acme:key-a,bravo:key-b", **memory)
    question, answer, png, shared = secret("question"), secret("answer"), noise_png(11), noise_png(12)

    async def scenario() -> None:
        async with gateway(settings) as (_, client):
            target = record(settings, question, answer, [png, shared])
            keeps_shared = record(settings, "another question", "another answer", [shared])
            alice = [record(settings, secret("q"), secret("a"), [noise_png(20 + n)], user="alice") for n in range(2)]
            theirs = record(settings, "their question", "their answer", [noise_png(30)], tenant="bravo", user="alice")
            if memory:  # embedded first, so that there are points to delete
                async def ingested() -> bool:
                    return (await client.get("/memory/stats", headers=A)).json()["backlog"] == 0
                await until(ingested, "ingest")
                assert (await client.get("/memory/stats", headers=A)).json()["points"] == 5
            sha, shared_sha = (image.sha256 for image in target.images)
            for one in (sha, shared_sha):
                assert (await client.get(f"/images/{one}", headers=A, params={"size": 64})).status_code == 200
            assert named(tmp_path, sha) and found_in(tmp_path, needles_of(question, answer, png))

            assert (await client.delete(f"/exchanges/{target.id}", headers=A)).status_code == 204
            assert (await client.get(f"/exchanges/{target.id}", headers=A)).status_code == 404
            assert (await client.get(f"/images/{sha}", headers=A)).status_code == 404
            assert (await client.delete(f"/exchanges/{target.id}", headers=A)).status_code == 404
            assert (await client.delete(f"/exchanges/{theirs.id}", headers=A)).status_code == 404
            forgot = await client.post("/exchanges/forget", headers=A, json={"user": "alice"})
            assert forgot.status_code == 200 and forgot.json()["deleted"] == 2

            await until(settled(settings), "the finisher")
            # Its own image, with every thumbnail, is gone; the image another exchange uses stays.
            assert named(tmp_path, sha) == []
            assert (await client.get(f"/images/{shared_sha}", headers=A, params={"size": 64})).status_code == 200
            assert (await client.get(f"/exchanges/{keeps_shared.id}", headers=A)).status_code == 200
            for one in alice:
                assert named(tmp_path, one.images[0].sha256) == []
            assert (await client.get(f"/exchanges/{theirs.id}", headers=B)).status_code == 200  # bravo's alice
            if memory:
                assert (await client.get("/memory/stats", headers=A)).json()["points"] == 1
        assert found_in(tmp_path, needles_of(question, answer, png)) == {}

    asyncio.run(scenario())


def test_an_exchange_is_named_by_a_unique_prefix_of_its_id_as_git_names_commits(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, api_keys="acme:key-a,bravo:key-b")

    async def scenario() -> None:
        async with gateway(settings) as (_, client):
            one, two = (record(settings, f"question {n}", "answer", [], exchange_id=f"3f2a{n}bcd" + "0" * 24)
                        for n in (1, 2))
            record(settings, "theirs", "theirs", [], tenant="bravo", exchange_id="9e9e" + "0" * 28)

            found = await client.get("/exchanges/3f2a1bc", headers=A)
            assert found.status_code == 200 and found.json()["id"] == one.id
            ambiguous = await client.delete("/exchanges/3f2a", headers=A)
            assert ambiguous.status_code == 400, ambiguous.text
            error = ambiguous.json()["error"]
            assert error["code"] == "exchange_id_ambiguous" and error["param"] == "exchange_id"
            assert one.id in error["message"] and two.id in error["message"]
            for missing in ("3f2", "3f2a9", "9e9e"):  # too short, no such id, another tenant's
                response = await client.delete(f"/exchanges/{missing}", headers=A)
                assert response.status_code == 404 and response.json()["error"]["code"] == "exchange_not_found"

            assert (await client.delete("/exchanges/3f2a2", headers=A)).status_code == 204
            assert (await client.get(f"/exchanges/{two.id}", headers=A)).status_code == 404
            assert (await client.get("/exchanges/3f2a", headers=A)).json()["id"] == one.id  # unique again
            assert (await client.get("/exchanges/9e9e", headers=B)).status_code == 200

    asyncio.run(scenario())


def test_retention_forgets_old_exchanges(tmp_path: Path, memory: dict[str, Any]) -> None:
    settings = settings_for(tmp_path, memory_retention_days=2, memory_retention_interval_s=0.1, **memory)
    question, answer, png = secret("q"), secret("a"), noise_png(41)

    async def scenario() -> None:
        async with gateway(settings) as (_, client):
            old = record(settings, question, answer, [png], tenant="default", created_at=time.time() - 3 * DAY_S)
            new = record(settings, "new", "new answer", [noise_png(42)], tenant="default")

            async def forgotten() -> bool:
                return (await client.get(f"/exchanges/{old.id}")).status_code == 404
            await until(forgotten, "the retention sweep")
            await until(settled(settings), "the finisher")
            assert (await client.get(f"/exchanges/{new.id}")).status_code == 200
            assert named(tmp_path, old.images[0].sha256) == []
        assert found_in(tmp_path, needles_of(question, answer, png)) == {}

    asyncio.run(scenario())


def test_a_gateway_that_leaves_background_work_to_workers_only_records_deletions(tmp_path: Path) -> None:
    """VISIONRAG_GATEWAY_INGEST=false (the default on a shared journal): a DELETE is answered and the
    exchange is gone from every read path, while finishing it (files, points) is left to a worker."""
    settings = settings_for(tmp_path, gateway_ingest=False, memory_retention_days=1)

    async def scenario() -> None:
        async with gateway(settings) as (app, client):
            history = app.state.history
            assert history.finisher._thread is None and history.retention._thread is None
            one = record(settings, "q", "a", [noise_png(51)], tenant="default")
            assert (await client.delete(f"/exchanges/{one.id}")).status_code == 204
            assert (await client.get(f"/images/{one.images[0].sha256}")).status_code == 404
            await asyncio.sleep(0.3)
            assert not await settled(settings)() and named(tmp_path, one.images[0].sha256)
            # What a worker runs: the finisher's pass.
            assert await asyncio.to_thread(history.finish_forgetting) == 1
            assert named(tmp_path, one.images[0].sha256) == []

    asyncio.run(scenario())


def test_the_runtime_hands_memory_s_part_to_history_when_memory_is_on(tmp_path: Path, clip_cache: Path) -> None:
    off = Runtime.from_settings(settings_for(tmp_path / "off"))
    on = Runtime.from_settings(settings_for(tmp_path / "on", memory_enabled=True, fastembed_cache_dir=clip_cache))
    try:
        assert off.memory is None and off.history.forgetter.points is None
        assert on.memory is not None and on.history.forgetter.points is on.memory.points
        # Thumbnails decode within the budget CLIP's decodes share.
        assert on.history.thumbnails.decoder is on.memory.embedder.decoder
    finally:
        for runtime in (off, on):
            asyncio.run(runtime.close())
