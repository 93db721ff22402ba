"""Regenerate serving/vllm-0.10.2-envs.json: every environment variable vLLM 0.10.2's source reads.

Why: Kubernetes injects `<SERVICE>_PORT`, `<SERVICE>_SERVICE_HOST`... for every Service into every
pod, and vLLM 0.10.2 reads some such names itself (`VLLM_PORT`: a Service named `vllm` makes it exit
with "VLLM_PORT 'tcp://...' appears to be a URI"). tests/deploy compares the names Kubernetes would
inject with this list. Like serving/vllm_flags_snapshot.py it reads the sdist's source from PyPI
(sha256 checked) without importing it:

- vllm/envs.py: the keys of `environment_variables` (what `vllm.envs.X` reads);
- every vllm/**/*.py: literal names in `os.environ[...]`, `os.environ.get(...)`, `os.getenv(...)`,
  `"X" in os.environ` (libraries vLLM calls read more; `VLLM_` as a whole is treated as vLLM's).

    python serving/vllm_envs_snapshot.py            # rewrite the snapshot (~11 MB download)
    python serving/vllm_envs_snapshot.py --check    # exit 1 if the committed snapshot differs
"""

from __future__ import annotations

import ast
import io
import sys
import tarfile
from pathlib import Path

try:
    from serving.vllm_flags_snapshot import VERSION, download_sdist, write_or_check
except ImportError:  # run as a script: serving/ itself is sys.path[0]
    from vllm_flags_snapshot import VERSION, download_sdist, write_or_check  # type: ignore[no-redef]

SNAPSHOT = Path(__file__).resolve().parent / f"vllm-{VERSION}-envs.json"


def fetch_python_sources(version: str = VERSION) -> dict[str, str]:
    prefix = f"vllm-{version}/"
    sources: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(download_sdist(version)), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(prefix)
            if member.isfile() and name.startswith("vllm/") and name.endswith(".py"):
                sources[name] = archive.extractfile(member).read().decode("utf-8", "replace")
    if "vllm/envs.py" not in sources:
        raise SystemExit("vllm/envs.py missing from the sdist")
    return sources


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", None) == "os"


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def envs_module_names(source: str) -> set[str]:
    """Keys of the `environment_variables` dict literal in vllm/envs.py."""
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == "environment_variables" for t in targets) and isinstance(node.value, ast.Dict):
            return {key for key in map(_literal, node.value.keys) if key}
    raise SystemExit("vllm/envs.py: no `environment_variables` dict literal")


def read_names(source: str, path: str) -> set[str]:
    """Literal names read through os.environ / os.getenv anywhere in one file."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            names.add(_literal(node.slice) or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            func = node.func
            if (func.attr in {"get", "pop", "setdefault"} and _is_os_environ(func.value)) or (
                func.attr == "getenv" and getattr(func.value, "id", None) == "os"
            ):
                names.add(_literal(node.args[0]) or "")
        elif isinstance(node, ast.Compare) and any(_is_os_environ(c) for c in node.comparators):
            names.add(_literal(node.left) or "")
    return {name for name in names if name}


def snapshot(sources: dict[str, str]) -> dict[str, object]:
    names = envs_module_names(sources["vllm/envs.py"])
    for path, source in sources.items():
        names |= read_names(source, path)
    return {
        "vllm": VERSION,
        "source": f"vllm-{VERSION}.tar.gz from PyPI; regenerate with python serving/vllm_envs_snapshot.py",
        "reads": "vllm/envs.py environment_variables, and os.environ / os.getenv literals in vllm/**/*.py",
        "names": sorted(names),
    }


def main(argv: list[str] | None = None) -> int:
    return write_or_check(argv, __doc__.splitlines()[0], SNAPSHOT, lambda: snapshot(fetch_python_sources()), "names")


if __name__ == "__main__":
    sys.exit(main())
