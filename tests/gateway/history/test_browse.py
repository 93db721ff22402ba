"""GET /exchanges (a tenant's exchanges newest first, cursor-paged, filtered) and GET /images/{sha}?size=
(thumbnails made once, cached on disk, tenant-scoped like the original), on the history routes' app with
memory off and on (tests.gateway.history.conftest)."""

from __future__ import annotations

import base64
import dataclasses
import io
from datetime import UTC, datetime

import orjson
import pytest
from PIL import Image

from gateway.journal.sqlite import SQLiteJournal
from tests.gateway.history.conftest import A, Api, B, ingest
from tests.gateway.memory.conftest import noise_png

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def page(api: Api, headers: dict = A, **params: object) -> dict:
    response = api.client.get("/exchanges", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_is_newest_first_paged_and_never_repeats(api: Api, make_exchange) -> None:
    # Two share a timestamp: the cursor must still split between them without a repeat or a gap.
    times = [T0, T0 + 1, T0 + 1, T0 + 2, T0 + 3]
    mine = [make_exchange(f"q{n}", f"a{n}", [noise_png(n)] if n % 2 else [], tenant="acme", created_at=t)
            for n, t in enumerate(times)]
    for exchange in mine:
        api.journal.append(exchange)
    api.journal.append(make_exchange("theirs", "theirs", tenant="bravo", created_at=T0 + 10))

    seen: list[str] = []
    cursor = None
    while True:
        body = page(api, limit=2, **({"cursor": cursor} if cursor else {}))
        assert body["object"] == "list" and len(body["data"]) <= 2
        seen += [row["id"] for row in body["data"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]
    expected = [e.id for e in sorted(mine, key=lambda e: e.created_at, reverse=True)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)) == 5
    assert seen[0] == mine[4].id and seen[-1] == mine[0].id

    row = page(api, limit=1)["data"][0]
    assert row["question"] == "q4" and row["answer"] == "a4" and row["images"] == []
    with_image = page(api, limit=2)["data"][1]
    assert with_image["images"][0]["sha256"] == mine[3].images[0].sha256
    assert with_image["images"][0]["url"].endswith(f"/images/{mine[3].images[0].sha256}")
    assert [r["question"] for r in page(api, B)["data"]] == ["theirs"]


def test_list_filters(api: Api, make_exchange) -> None:
    old = make_exchange("old", "a", tenant="acme", model="m1", user="u1", created_at=T0)
    new = make_exchange("new", "a", tenant="acme", model="m2", user="u2", created_at=T0 + 3600)
    for exchange in (old, new):
        api.journal.append(exchange)

    def ids(**params: object) -> list[str]:
        return [row["id"] for row in page(api, **params)["data"]]

    assert ids() == [new.id, old.id]
    assert ids(model="m1") == [old.id]
    assert ids(model=["m1", "m2"]) == [new.id, old.id]
    assert ids(user="u2") == [new.id]
    assert ids(time_from="2026-03-01T00:30:00Z") == [new.id]
    assert ids(time_to=T0 + 60) == [old.id]


def test_list_refuses_bad_parameters_and_missing_keys(api: Api) -> None:
    for params, param in (({"cursor": "nope"}, "cursor"), ({"cursor": "bm9wZQ"}, "cursor"),
                          ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                          ({"time_from": "yesterday"}, "time_from")):
        response = api.client.get("/exchanges", headers=A, params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] in (param, f"query.{param}"), response.json()
    assert api.client.get("/exchanges").status_code == 401


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    # The old `created_at:seq` shape (numbers SQLite cannot bind were a 500), no longer made at all.
    b64(b"1772323200.0:%d" % 2**70), b64(b"1772323200.0:-%d" % 2**64), b64(b"%s:1" % (b"9" * 400)),
    b64(b"1772323200.0:1"),
    # Not a (finite number, id) pair.
    b64(b"[1e400, \"x\"]"), b64(b"[NaN, \"x\"]"), b64(b"[true, \"x\"]"), b64(b"[\"1\", \"x\"]"),
    b64(b"[1.0, 5]"), b64(b"[1.0, \"\"]"), b64(b"[1.0, \"%s\"]" % (b"a" * 65)), b64(b"[1.0]"),
    b64(b"{\"a\": 1}"), b64(b"[1.0, \"x\", 3]"), "A" * 300,
])
def test_cursors_it_did_not_make_are_invalid(api: Api, make_exchange, cursor: str) -> None:
    api.journal.append(make_exchange("q", "a", tenant="acme", created_at=T0))
    response = api.client.get("/exchanges", headers=A, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor" and response.json()["error"]["param"] == "cursor"


def test_cursors_reveal_nothing_of_other_tenants(api: Api, make_exchange, tmp_path, monkeypatch) -> None:
    """The same rows of one tenant page with the same cursors whatever the other tenants wrote between
    them: a cursor holding the journal's row number let a tenant count (and, polling, follow) the rest."""
    mine = [dataclasses.replace(make_exchange(f"q{n}", "a", tenant="acme", created_at=T0 + n), id=f"{n:032x}")
            for n in range(5)]

    def cursors(name: str, others_between: int) -> list[str]:
        journal = SQLiteJournal(tmp_path / f"{name}.sqlite3")
        for exchange in mine:
            for _ in range(others_between):
                journal.append(make_exchange("theirs", "theirs", tenant="bravo", created_at=exchange.created_at))
            journal.append(exchange)
        monkeypatch.setattr(api.history, "journal", journal)
        found, seen, cursor = [], [], None
        while True:
            body = page(api, limit=2, **({"cursor": cursor} if cursor else {}))
            seen += [row["id"] for row in body["data"]]
            if not (cursor := body["next_cursor"]):
                break
            found.append(cursor)
        journal.close()
        assert seen == [e.id for e in reversed(mine)]
        return found

    quiet, busy = cursors("quiet", 0), cursors("busy", 40)
    assert quiet == busy and len(quiet) == 2
    # What a cursor holds is the last row shown: its own time and id.
    assert [orjson.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4))) for c in quiet] == [
        [mine[3].created_at, mine[3].id], [mine[1].created_at, mine[1].id]]


def test_pages_split_rows_of_the_same_time(api: Api, make_exchange) -> None:
    mine = [make_exchange(f"q{n}", "a", tenant="acme", created_at=T0) for n in range(7)]
    for exchange in mine:
        api.journal.append(exchange)
    seen, cursor = [], None
    while True:
        body = page(api, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [row["id"] for row in body["data"]]
        if not (cursor := body["next_cursor"]):
            break
    assert len(seen) == 7 and set(seen) == {e.id for e in mine}


def test_thumbnails_are_small_cached_and_tenant_scoped(api: Api, make_exchange, tmp_path) -> None:
    big = noise_png(7, size=(900, 600))
    mine = make_exchange("q", "a", [big], tenant="acme")
    ingest(api, mine)
    sha = mine.images[0].sha256

    response = api.client.get(f"/images/{sha}", headers=A, params={"size": 100})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(response.content)) as thumb:
        assert thumb.size == (128, 85)  # the next stored size up, aspect kept
    assert len(response.content) < len(big) / 10
    cached = tmp_path / "thumbnails" / "128" / sha[:2] / f"{sha}.webp"
    assert cached.read_bytes() == response.content
    # Served from the cache: what is on disk is what comes back.
    cached.write_bytes(b"from the cache")
    assert api.client.get(f"/images/{sha}", headers=A, params={"size": 128}).content == b"from the cache"

    # Never enlarged past the original; the original is unchanged without `size`.
    assert api.client.get(f"/images/{sha}", headers=A).content == big
    small = make_exchange("q", "a", [noise_png(8)], tenant="acme")  # 96x80
    ingest(api, small)
    with Image.open(io.BytesIO(api.client.get(f"/images/{small.images[0].sha256}", headers=A,
                                              params={"size": 512}).content)) as thumb:
        assert thumb.size == (96, 80)

    # Another tenant gets 404, exactly as for the original; sizes are bounded.
    assert api.client.get(f"/images/{sha}", headers=B, params={"size": 128}).status_code == 404
    assert api.client.get(f"/images/{'0' * 64}", headers=A, params={"size": 128}).status_code == 404
    for size in (0, 513, "big"):
        bad = api.client.get(f"/images/{sha}", headers=A, params={"size": size})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "query.size", bad.text
    # One render made every size, and only those: an image never fills the disk with variants.
    assert sorted(int(p.name) for p in (tmp_path / "thumbnails").iterdir()) == [64, 128, 256, 512]
