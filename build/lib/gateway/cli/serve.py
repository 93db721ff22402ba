"""`visionrag serve`: the gateway, in this process."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: VISIONRAG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: VISIONRAG_PORT).")] = None,
) -> None:
    """Run the gateway (uvicorn, one process) with the settings from the environment and `.env`."""
    import uvicorn

    from gateway.settings import Settings

    # A new gateway: its own settings, as uvicorn would read them, not those `make run` recorded.
    settings = Settings()
    # log_config=None: uvicorn's loggers keep what create_app set (gateway.logs) instead of its own format.
    uvicorn.run("gateway.api.app:create_app", factory=True, host=host or settings.host, port=port or settings.port,
                access_log=False, log_config=None)
