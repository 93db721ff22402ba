"""Parse argument lists with the installed vLLM's OWN OpenAI-server parser; run with .venv-vllm's python.

stdin: JSON {"case name": ["--flag", "value", ...], ...}
stdout: JSON {"case name": {"ok": true, "args": {dest: value, ...}} | {"ok": false, "error": "..."}}

Uses exactly what `python -m vllm.entrypoints.openai.api_server` uses in vLLM 0.32
(vllm/entrypoints/launchers/api_server/entry.py): FlexibleArgumentParser + make_arg_parser, then
validate_parsed_serve_args. All cases share one interpreter: importing vLLM costs seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def parse(argv: list[str]) -> dict[str, object]:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm-api-server"))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(argv)
            validate_parsed_serve_args(namespace)
    except SystemExit:
        return {"ok": False, "error": stderr.getvalue().strip().splitlines()[-1:] or ["exit"]}
    except Exception as exc:  # noqa: BLE001 - validation errors of every kind are the answer here
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "args": json.loads(json.dumps(vars(namespace), default=repr))}


def main() -> int:
    cases = json.load(sys.stdin)
    json.dump({name: parse(argv) for name, argv in cases.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
