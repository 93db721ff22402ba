"""`visionrag forget` against a real data dir (embedded store) and the tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.journal import Journal
from tests.memory.test_cli import docs, env, run  # noqa: F401 - fixtures
from tests.memory.test_forget import found_in


def test_forget_by_id_then_by_date_leaves_nothing(env: Path, docs: Path) -> None:  # noqa: F811
    run("ingest", str(docs))
    hits = json.loads(run("search", "a caption about picture 2", "--target", "answer", "--json", "--limit", "1"))
    target = hits["data"][0]
    assert target["answer"] == "a caption about picture 2"

    assert "forgotten: 1" in run("forget", target["exchange_id"])
    again = json.loads(run("search", "a caption about picture 2", "--target", "answer", "--json"))
    assert target["exchange_id"] not in [hit["exchange_id"] for hit in again["data"]]
    assert not (env / "images" / target["image_sha256"][:2] / target["image_sha256"]).exists()
    assert found_in(env, {"caption": b"a caption about picture 2"}) == {}

    assert "forgotten: 3" in run("forget", "--before", "2999-01-01")
    journal = Journal(env / "journal.sqlite3")
    assert journal.count() == 0
    journal.close()
    assert [p for p in (env / "images").rglob("*") if p.is_file()] == []
    assert found_in(env, {"caption": b"a caption about picture"}) == {}

    refused = CliRunner().invoke(app, ["forget"])
    assert refused.exit_code == 1 and "give exchange ids" in refused.output
