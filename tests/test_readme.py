"""The README's quick start, run the way a user runs it.

The blocks marked `<!-- test: run -->` in README.md's "Quick start" and "Memory" sections are
extracted and executed: Python with `.venv/bin/python`, bash with bash after the block marked
`<!-- test: setup -->` (`source .venv/bin/activate`). The stack is what `make run PROFILE=tiny` starts
(serving/stack.py: a real vLLM with the tiny model, then the gateway), on free ports and a temporary
data dir: the only substitution made in the snippets is the gateway's URL. Then `make stop`, and the
CLI must still work from the recorded settings, at once and from another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.stack import free_port

pytestmark = pytest.mark.slow  # one vLLM start (15-60 s) of its own, as `make run` does

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
README_URL = "http://127.0.0.1:8080"
QUESTION = "Which foreign key links these tables?"
EXAMPLE_IMAGE = ROOT / "examples" / "er-diagram.png"
_MARKED = re.compile(r"<!-- test: (run|setup) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    role: str  # "run" or "setup"
    language: str
    code: str


def snippets(section: str) -> list[Snippet]:
    """The marked blocks of one `## ` section of README.md, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return [Snippet(*match.groups()) for match in _MARKED.finditer(text[start : end if end != -1 else None])]


def quick_start(language: str) -> list[str]:
    return [s.code for s in snippets("Quick start") if s.role == "run" and s.language == language]


@dataclass
class Stack:
    url: str
    run_dir: Path
    data_dir: Path
    env: dict[str, str]  # a user's shell: no VISIONRAG_* settings, the runtime file found
    start_output: str

    def start(self) -> subprocess.CompletedProcess[str]:
        """What `make run PROFILE=tiny` runs, with a data dir set in the environment as a user may."""
        return subprocess.run(
            [sys.executable, "serving/stack.py", "start", "--profile", "tiny", "--run-dir", str(self.run_dir),
             "--vllm-port", str(free_port()), "--gateway-port", self.url.rsplit(":", 1)[1],
             "--gateway-python", str(VENV_BIN / "python")],
            cwd=ROOT, env={**self.env, "VISIONRAG_DATA_DIR": str(self.data_dir)}, capture_output=True, text=True,
            timeout=420, check=False,
        )

    def bash(self, code: str, cwd: Path = ROOT, timeout_s: float = 120) -> str:
        setup = "\n".join(s.code for s in snippets("Quick start") if s.role == "setup")
        return _run(["bash", "-euo", "pipefail", "-c", f"{setup}\n{self._here(code)}"], cwd, self.env, timeout_s)

    def python(self, code: str, tmp_path: Path) -> str:
        script = tmp_path / "ask.py"
        script.write_text(self._here(code))
        return _run([str(VENV_BIN / "python"), str(script)], ROOT, self.env, 120)

    def _here(self, code: str) -> str:
        return code.replace(README_URL, self.url)

    def stop(self) -> str:
        return _run([sys.executable, "serving/stack.py", "stop", "--run-dir", str(self.run_dir)], ROOT, self.env, 90)


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert result.returncode == 0, f"{argv[-1][-400:]}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (VENV_BIN / "python").exists():
        pytest.fail(".venv is missing: run `make install` (or `make test`) first")
    work = tmp_path_factory.mktemp("readme")
    run_dir, data_dir = work / "run", work / "data"
    shell = {key: value for key, value in os.environ.items() if not key.startswith("VISIONRAG_")}
    shell |= {"VISIONRAG_RUN_ENV_FILE": str(run_dir / "gateway.env"), "COLUMNS": "200"}  # no wrapped paths in tables
    stack = Stack(f"http://127.0.0.1:{free_port()}", run_dir, data_dir, shell, "")
    start = stack.start()
    stack.start_output = start.stdout + start.stderr
    try:
        assert start.returncode == 0, stack.start_output
        yield stack
    finally:
        stack.stop()


def test_make_run_prints_the_readme_lines_and_records_the_gateway_settings(stack: Stack) -> None:
    lines = stack.start_output.splitlines()
    for prefix in ("vLLM (tiny) starting: pid ", "vLLM healthy after ", f"gateway ready: {stack.url} (pid ",
                   f"model: tiny-vlm; data: {stack.data_dir}; stop both with `make stop RUN_DIR={stack.run_dir}`",
                   f"the visionrag CLI (.venv/bin/visionrag) takes these settings from {stack.run_dir}"):
        assert any(line.startswith(prefix) for line in lines), (prefix, stack.start_output)
    from dotenv import dotenv_values

    recorded = dotenv_values(stack.run_dir / "gateway.env")
    assert recorded["VISIONRAG_DATA_DIR"] == str(stack.data_dir)
    assert recorded["VISIONRAG_FASTEMBED_CACHE_DIR"] == str(ROOT / "models" / "clip-tiny")  # absolute
    assert recorded["HF_HUB_OFFLINE"] == "1"
    assert f"http://{recorded['VISIONRAG_HOST']}:{recorded['VISIONRAG_PORT']}" == stack.url


def test_the_python_snippet_asks_about_the_example_image(stack: Stack, tmp_path: Path) -> None:
    (code,) = quick_start("python")
    answer, usage = stack.python(code, tmp_path).rstrip("\n").split("\n")
    assert answer.strip()
    assert usage.startswith("CompletionUsage(completion_tokens=16, prompt_tokens=")


def _wait_until_embedded(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while (stats := httpx.get(stack.url + "/memory/stats", timeout=5).json())["backlog"] > 0:
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)


def test_the_curl_search_finds_the_exchange_by_its_image(stack: Stack) -> None:
    _wait_until_embedded(stack)
    curl, _cli = quick_start("bash")
    result = json.loads(stack.bash(curl))
    (hit,) = result["data"]
    assert hit["question"] == QUESTION and hit["model"] == "tiny-vlm"
    assert hit["image_sha256"] == hashlib.sha256(EXAMPLE_IMAGE.read_bytes()).hexdigest()
    assert hit["score"] > 0.999 and result["query_type"] == "image"


def test_the_cli_asks_the_gateway_that_holds_the_store(stack: Stack, tmp_path: Path) -> None:
    _wait_until_embedded(stack)
    _curl, cli = quick_start("bash")
    out = stack.bash(cli)
    assert "1 result(s), target=question" in out and "Which" in out
    assert f"held by the gateway at {stack.url}: 1 points" in out

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = _run([str(VENV_BIN / "visionrag"), "status"], elsewhere, stack.env, 60)
    assert str(stack.data_dir) in status and "held by the gateway" in status
    assert list(elsewhere.iterdir()) == []  # no ./data made where the CLI happened to run


def test_after_make_stop_the_cli_uses_the_recorded_models_at_once(stack: Stack, tmp_path: Path) -> None:
    out = stack.stop()
    assert "stopped gateway" in out and "stopped vllm" in out
    assert (stack.run_dir / "gateway.env").is_file()

    started = time.monotonic()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = json.loads(_run([str(VENV_BIN / "visionrag"), "search", QUESTION, "--target", "question", "--json"],
                            elsewhere, stack.env, 60))
    assert found["data"][0]["question"] == QUESTION
    assert time.monotonic() - started < 20  # the local tiny CLIP, not fastembed's ~40 s of hub retries

    (memory,) = [s.code for s in snippets("Memory: search and bulk ingest") if s.role == "run"]
    out = stack.bash(memory)
    assert "queued: 1" in out and "2 result(s), target=answer" in out
    assert f"edge at {stack.data_dir}" in out and "2 points" in out


def test_memory_in_the_answer_cites_the_quick_start_s_exchange(stack: Stack, tmp_path: Path) -> None:
    # The reader stopped the stack for the CLI section; this section starts it again on the same data.
    start = stack.start()
    assert start.returncode == 0, start.stdout + start.stderr
    (code,) = [s.code for s in snippets("Memory in the answer") if s.role == "run"]
    first = stack.python(code, tmp_path).splitlines()
    reason, sources = first[0].split(" ", 1)
    assert reason == "used", first
    cited = sources.split(",")
    number, exchange_id, rest = first[1].split(" ", 2)
    assert number == "1" and exchange_id == cited[0]
    assert rest.startswith(QUESTION) and rest.endswith("/images/" + hashlib.sha256(EXAMPLE_IMAGE.read_bytes()).hexdigest())
    # The exchange cited is the quick start's: the same image, asked the same question.
    found = httpx.get(f"{stack.url}/exchanges/{exchange_id}", timeout=10).json()
    assert found["question"] == QUESTION
    # Then the document `visionrag ingest` loaded: the same image, its caption as the answer.
    caption = (ROOT / "examples" / "er-diagram.txt").read_text().strip()
    assert first[2].startswith(f"2 {cited[1]} {caption} http")
