"""`make run` keeps earlier runs' logs: each start appends a marker line instead of truncating."""

from __future__ import annotations

import json

from serving.stack import mark_start


def test_a_new_run_appends_a_json_marker_after_the_earlier_log(tmp_path):
    log = tmp_path / "run" / "gateway.log"
    mark_start(log, "gateway starting (port 8080)")
    with log.open("a") as out:
        out.write("INFO: the first run's last line\n")
    mark_start(log, "gateway starting (port 8081)")

    lines = log.read_text().splitlines()
    assert lines[1] == "INFO: the first run's last line"
    markers = [json.loads(lines[0]), json.loads(lines[2])]
    assert [m["message"] for m in markers] == ["gateway starting (port 8080)", "gateway starting (port 8081)"]
    assert {m["logger"] for m in markers} == {"make run"}
    assert all(m["time"][:4].isdigit() and m["level"] == "INFO" for m in markers)
