"""Asking a running gateway over HTTP: what a command does with --gateway, or when that gateway holds
the embedded store."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.output import fail

# Options of every command that can ask a running gateway instead of opening the data dir itself.
GatewayOption = Annotated[str | None, typer.Option(help="Ask this running gateway (http://host:port) over HTTP.")]
ApiKeyOption = Annotated[str | None, typer.Option(envvar="VISIONRAG_CLI_API_KEY", help="Gateway API key.")]


def gateway_call(method: str, base_url: str, path: str, api_key: str | None, expect: int = 200,
                 **kwargs: object) -> dict:
    """One request to a running gateway; any failure ends the command with what the gateway said."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, base_url.rstrip("/") + path, headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the gateway at {base_url}: {exc}") from None
    if response.status_code == expect == 204:
        return {}
    try:
        payload = response.json()
    except ValueError:
        raise fail(f"the gateway at {base_url} answered HTTP {response.status_code} without JSON") from None
    if response.status_code != expect:
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        hint = ""
        if response.status_code == 401:  # the gateway's message speaks HTTP; say how this CLI sends a key
            hint = ("\nThis gateway wants an API key: pass it with --api-key KEY or export VISIONRAG_CLI_API_KEY=KEY"
                    if not api_key else "\nThe key given (--api-key or VISIONRAG_CLI_API_KEY) is not one it takes.")
        raise fail(f"{path} failed (HTTP {response.status_code}): {message or payload}{hint}")
    return payload
