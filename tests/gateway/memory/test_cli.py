"""`visionrag ingest` / `search` / `status` / `optimize` against a real data dir and the tiny CLIP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.store.edge import EdgeStore
from tests.gateway.memory.conftest import noise_png
from tests.plugins.gateway_server import free_port


@pytest.fixture
def env(tmp_path: Path, clip_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("VISIONRAG_DATA_DIR", str(data))
    monkeypatch.setenv("VISIONRAG_FASTEMBED_CACHE_DIR", str(clip_cache))
    monkeypatch.setenv("VISIONRAG_PORT", str(free_port()))  # no gateway listens there
    monkeypatch.delenv("VISIONRAG_QDRANT_URL", raising=False)
    monkeypatch.setenv("VISIONRAG_RUN_ENV_FILE", "")  # not the settings of the checkout's last `make run`
    return data


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(4):
        (folder / f"img{n}.png").write_bytes(noise_png(100 + n))
        (folder / f"img{n}.txt").write_text(f"a caption about picture {n}")
    (folder / "notes.md").write_text("not an image")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_ingest_folder_reports_skips_and_is_idempotent(env: Path, docs: Path) -> None:
    out = run("ingest", str(docs))
    assert "queued" in out and "4" in out
    assert "not an image file (.md)" in out and "image refused (invalid_image)" in out
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert journal.count() == 4 and journal.backlog() == 0  # drained by the CLI itself
    journal.close()

    again = run("ingest", str(docs))
    assert "already ingested before" in again
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert journal.count() == 4
    journal.close()

    hits = json.loads(run("search", "a caption about picture 2", "--target", "answer", "--json", "--limit", "2"))
    assert hits["data"][0]["answer"] == "a caption about picture 2"
    by_image = json.loads(run("search", "--image", str(docs / "img3.png"), "--target", "image", "--json"))
    assert by_image["data"][0]["answer"] == "a caption about picture 3"
    assert by_image["data"][0]["model"] == "ingest"
    assert "4 points" in run("status")


def test_ingest_jsonl_with_relative_paths_and_bad_lines(env: Path, docs: Path, tmp_path: Path) -> None:
    listing = tmp_path / "docs.jsonl"
    listing.write_text("\n".join([
        json.dumps({"image": "docs/img0.png", "caption": "from jsonl"}),
        "{not json",
        json.dumps({"caption": "no image"}),
        json.dumps({"image": "docs/absent.png"}),
        json.dumps({"image": "docs/img1.png", "caption": 7}),
    ]))
    out = run("ingest", str(listing), "--tenant", "acme", "--model", "catalog")
    for reason in ("invalid JSON line", 'no "image" string', "image file not found", '"caption" is not a'):
        assert reason in out
    store = EdgeStore(env / "qdrant" / "visionrag_exchanges")
    assert store.count("acme") == 1 and store.count() == 1
    store.close()


def test_with_the_store_held_elsewhere_ingest_queues_and_search_says_what_to_do(env: Path, docs: Path) -> None:
    holder = EdgeStore(env / "qdrant" / "visionrag_exchanges")  # stands in for a running gateway
    holder.ensure_schema()
    try:
        out = run("ingest", str(docs), "--timeout", "0.5")
        assert "A running gateway holds the vector store" in out
        journal = SQLiteJournal(env / "journal.sqlite3")
        assert journal.backlog() == 4  # queued for the gateway's worker
        journal.close()
        result = CliRunner().invoke(app, ["search", "anything"])
        assert result.exit_code == 1 and "cannot reach the gateway" in result.output
        locked = CliRunner().invoke(app, ["optimize"])
        assert locked.exit_code == 1 and "open in another process" in locked.output
    finally:
        holder.close()


def test_search_needs_exactly_one_query(env: Path) -> None:
    result = CliRunner().invoke(app, ["search"])
    assert result.exit_code == 1 and "TEXT argument or --image" in result.output


def test_status_asks_the_gateway_that_holds_the_store(
    env: Path, clip_cache: Path, start_gateway, fake_upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.mkdir(parents=True)
    gateway = start_gateway(fake_upstream().base_url, data_dir=env, VISIONRAG_MEMORY_ENABLED="true",
                            VISIONRAG_FASTEMBED_CACHE_DIR=str(clip_cache), VISIONRAG_API_KEYS="acme:key-a")
    monkeypatch.setenv("VISIONRAG_PORT", str(gateway.port))
    out = run("status", "--api-key", "key-a")
    cells = re.sub(r"[│\s]+", " ", out)  # the table's wrapped cell, as one line
    assert f"held by the gateway at {gateway.url}: tenant acme: 0 points, 0 waiting" in cells
    refused = CliRunner().invoke(app, ["status", "--api-key", "wrong"])
    assert refused.exit_code == 1 and "/memory/stats failed (HTTP 401)" in refused.output
    assert "is not one it takes" in " ".join(refused.output.split())
    monkeypatch.delenv("VISIONRAG_CLI_API_KEY", raising=False)
    keyless = CliRunner().invoke(app, ["status"])
    assert keyless.exit_code == 1 and "(HTTP 401)" in keyless.output
    assert "pass it with --api-key KEY or export VISIONRAG_CLI_API_KEY=KEY" in " ".join(keyless.output.split())


def test_reindex_rebuilds_a_pre_hybrid_store_from_the_journal(env: Path, docs: Path) -> None:
    """A store made with CLIP's three vectors only is refused (the message names the way out); after
    `visionrag reindex` it has this version's vectors and every journaled exchange, searchable by text."""
    import shutil

    import qdrant_edge as qe

    from gateway.memory.store.base import SchemaMismatch

    run("ingest", str(docs))
    shard = env / "qdrant" / "visionrag_exchanges"
    assert shard.exists()
    shutil.rmtree(shard)
    qe.EdgeShard.create(str(shard), qe.EdgeConfig(vectors={
        name: qe.EdgeVectorParams(size=512, distance=qe.Distance.Cosine) for name in ("image", "question", "answer")
    })).close()
    with pytest.raises(SchemaMismatch, match="visionrag reindex"):
        EdgeStore(shard).ensure_schema()

    result = CliRunner().invoke(app, ["search", "caption about picture 2"], catch_exceptions=False)
    assert result.exit_code == 1 and "visionrag reindex" in result.output

    out = run("reindex")
    assert "Reindexing" in out and "4/4" in out
    store = EdgeStore(shard)
    assert store.count() == 4
    store.close()
    hits = json.loads(run("search", "picture 2", "--target", "terms", "--json"))["data"]
    assert hits[0]["answer"] == "a caption about picture 2"
