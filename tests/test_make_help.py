"""`make help`: every target and setting, their descriptions in one column whatever the longest name."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_help_lists_targets_and_settings_aligned() -> None:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    rows = [re.match(r"  (\S+)( +)(\S.*)", line) for line in out.splitlines() if line.startswith("  ")]
    assert rows and all(rows)
    columns = {len(row[1]) + len(row[2]) for row in rows}
    assert len(columns) == 1, out  # one column for every description
    names = [row[1] for row in rows]
    assert "bench-memory-long-message" in names and "run" in names
    for setting in ("PROFILE=", "RUN_DIR=data/run", "VLLM_PORT=8000", "GATEWAY_PORT=8080"):
        assert setting in names, out
