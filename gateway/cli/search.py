"""`visionrag search`: past exchanges by text or image, from the local store or a running gateway."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.env import gateway_url, load_settings, models_offline_if_unreachable
from gateway.cli.local import HUB_UNREACHABLE, run_local
from gateway.cli.output import SHORT_ID, console, fail, print_table, short, table
from gateway.cli.remote import ApiKeyOption, GatewayOption, gateway_call
from gateway.memory.store.schema import SCHEMA

if TYPE_CHECKING:
    from gateway.memory.protocol import SearchRequest
    from gateway.memory.service import Memory
    from gateway.runtime import Runtime
    from gateway.settings import Settings


# The choices of --target: /search's, from the store's schema.
Target = Enum("Target", [(name, name) for name in SCHEMA.targets], type=str)  # type: ignore[misc]


def search(
    text: Annotated[str | None, typer.Argument(help="Text to search for (or use --image).")] = None,
    image: Annotated[str | None, typer.Option(help="Search by this image: a file path or an http(s) URL.")] = None,
    target: Annotated[Target, typer.Option(
        help="Stored vector to compare with: CLIP's image/question/answer, the sentence model's passages "
             "(text), BM25 (terms); 'all' fuses the ones that suit the query.")] = Target["all"],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    model: Annotated[list[str] | None, typer.Option(help="Only these models (repeatable).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this client `user`.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only exchanges at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only exchanges at or before this time (UTC).")] = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
    tenant: Annotated[str | None, typer.Option(help="Local search only: tenant to search (default tenant).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")] = False,
) -> None:
    """Search past exchanges by text or image.

    Without --gateway the local store is searched directly; if a running gateway holds it, the CLI asks
    that gateway (at VISIONRAG_HOST:VISIONRAG_PORT) instead.
    """
    from pydantic import ValidationError

    from gateway.memory.protocol import SearchRequest

    if (text is None) == (image is None):
        raise fail("give a TEXT argument or --image, not both")
    settings = load_settings()
    filters: dict[str, object] = {"model": model or None, "user": user, "time_from": since, "time_to": until}
    try:
        query = SearchRequest.model_validate({"text": text, "image": image, "target": target.value,
                                              "limit": limit, "filters": filters})
    except ValidationError as exc:
        raise fail("; ".join(error["msg"] for error in exc.errors())) from None

    result = None if gateway else _local_search(settings, query, tenant or settings.default_tenant)
    if result is None:
        body = query.model_dump(mode="json", exclude_none=True)
        if image is not None:
            body["image"] = _image_url(image)
        result = gateway_call("post", gateway or gateway_url(settings), "/search", api_key, json=body)
    if as_json:
        console.print_json(json.dumps(result))
        return
    hits = table(f"{len(result['data'])} result(s), target={result['target']}",
                 ("score", "time", "model", "question", "answer", "image", "exchange"), no_wrap=("score", "time", "model", "image", "exchange"))
    for hit in result["data"]:
        # Short ids, which `visionrag forget` and GET/DELETE /exchanges/{id} take as prefixes (an ambiguous
        # one answers its candidates); the full ones are in --json.
        hits.add_row(f"{hit['score']:.4f}", str(hit["time"])[:16].replace("T", " "), hit["model"],
                     short(hit["question"]),
                     short(hit["answer"]), (hit.get("image_sha256") or "")[:8], hit["exchange_id"][:SHORT_ID])
    print_table(hits)


def _image_url(image: str) -> str:
    """The query image as the gateway takes it: a URL as given, a file as a data: URL."""
    if image.startswith(("http://", "https://", "data:")):
        return image
    import base64
    import mimetypes

    path = Path(image)
    if not path.is_file():
        raise fail(f"no such image file: {image}")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _local_search(settings: Settings, query: SearchRequest, tenant: str) -> dict | None:
    """Search the local store through memory in this process, answered as the gateway's /search
    answers; None if a running gateway holds the store."""
    from gateway.errors import BackendUnavailable
    from gateway.images import ImageError
    from gateway.memory.protocol import SearchResponse
    from gateway.memory.store.base import SearchFilter, StoreError, StoreLocked

    async def work(runtime: Runtime, memory: Memory) -> dict | None:
        try:
            memory.open()
        except StoreLocked:
            return None
        except StoreError as exc:  # SchemaMismatch names `visionrag reindex`
            raise fail(str(exc)) from None
        image = _image_url(query.image) if query.image is not None else None
        offline = models_offline_if_unreachable(runtime.settings)
        flt = SearchFilter(tenant=tenant, time_from=query.filters.time_from, time_to=query.filters.time_to,
                           models=query.filters.models, user=query.filters.user)
        try:
            outcome = await memory.search(flt, text=query.text, image=image, target=query.target, limit=query.limit)
        except ImageError as exc:
            raise fail(f"image refused ({exc.code}): {exc.message}") from None
        except BackendUnavailable as exc:  # the model's or the store's own message says why
            raise fail(str(exc.__cause__ or exc) + (HUB_UNREACHABLE if offline else "")) from None
        # Image URLs point at the configured gateway, which serves them.
        images = gateway_url(runtime.settings) + "/images/"
        response = SearchResponse.of(query, outcome, lambda sha: images + sha)
        return response.model_dump(mode="json")

    return run_local(settings, work)
