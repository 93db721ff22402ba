"""`visionrag`: bulk-load documents into memory, search it, and maintain it from the command line.

Settings come from the same VISIONRAG_* environment / `.env` as the gateway (data dir, Qdrant URL,
CLIP models), plus the runtime file `make run` writes (gateway.cli.env), so the CLI and the gateway
share one journal, one image store and one collection, from whichever folder the CLI runs.

One module per command; each builds what it works on through the runtime (gateway.runtime), the way
the gateway builds it, and calls the memory service, never the HTTP edge (gateway.api), which `serve`
only names for uvicorn. A command that finds the embedded store held by a running gateway asks that
gateway over HTTP instead (gateway.cli.remote).
"""

from __future__ import annotations

import typer

from gateway.cli import forget, ingest, optimize, reindex, search, serve, status, worker
from gateway.cli import list as list_command

app = typer.Typer(
    name="visionrag",
    help="VisionRAG: run the gateway, bulk-ingest images with captions, search past exchanges, maintain the index.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(ingest.ingest)
app.command()(search.search)
app.command("list")(list_command.list_)
app.command()(forget.forget)
app.command()(reindex.reindex)
app.command()(optimize.optimize)
app.command()(status.status)
app.command()(serve.serve)
app.command()(worker.worker)
