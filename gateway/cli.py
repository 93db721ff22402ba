"""`visionrag`: bulk-load documents into memory, search it, and maintain it from the command line.

Settings come from the same VISIONRAG_* environment / `.env` as the gateway (data dir, Qdrant URL,
CLIP models), plus the runtime file `make run` writes (gateway.cli_env), so the CLI and the gateway
share one journal, one image store and one collection, from whichever folder the CLI runs.

Bulk ingest goes through the same queue as chats: documents become journal records (endpoint "ingest")
and image blobs, then the same ingest worker embeds them. The embedded vector store is single-process:
if a running gateway holds it, the CLI leaves the queue to that gateway's worker and watches the
backlog drain; otherwise it drains the queue itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.images import ImageLoader
    from gateway.memory.protocol import SearchRequest

app = typer.Typer(
    name="visionrag",
    help="VisionRAG: run the gateway, bulk-ingest images with captions, search past exchanges, maintain the index.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

# Options of every command that can ask a running gateway instead of opening the data dir itself.
GatewayOption = Annotated[str | None, typer.Option(help="Ask this running gateway (http://host:port) over HTTP.")]
ApiKeyOption = Annotated[str | None, typer.Option(envvar="VISIONRAG_CLI_API_KEY", help="Gateway API key.")]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
# Fixed forever: bulk-ingest exchange ids derive from it, which makes re-running an ingest a no-op.
_DOCUMENT_NAMESPACE = uuid.UUID("0d6f0f3c-1b1e-4f43-9b8a-6a4c1d9e5b21")


class Target(str, Enum):
    image = "image"
    question = "question"
    answer = "answer"
    text = "text"
    terms = "terms"
    all = "all"


@dataclass(slots=True)
class Document:
    """One thing to ingest: where its image is (path or URL), its caption, and where it was listed."""

    image: str
    caption: str
    origin: str  # "file.jsonl:12" or the image path, for the skip report


_HUB_UNREACHABLE = ("\nThe model hub cannot be reached from here, so only the local cache was tried. "
                    "`make run PROFILE=tiny` records its local test models for the CLI.")


def _settings() -> Settings:
    from gateway.cli_env import load_settings

    return load_settings()


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


# --- ingest -------------------------------------------------------------------------------------------
def _documents(source: Path, skipped: Counter[str], examples: dict[str, str]) -> Iterator[Document]:
    def skip(reason: str, origin: str) -> None:
        skipped[reason] += 1
        examples.setdefault(reason, origin)

    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if path.suffix.lower() == ".txt" and any(path.with_suffix(s).exists() for s in IMAGE_SUFFIXES):
                continue  # a caption sidecar, read with its image
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skip(f"not an image file ({path.suffix or 'no suffix'})", str(path))
                continue
            sidecar = path.with_suffix(".txt")
            caption = sidecar.read_text(errors="replace").strip() if sidecar.exists() else ""
            yield Document(str(path), caption, str(path))
        return
    with source.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            origin = f"{source.name}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                skip("invalid JSON line", origin)
                continue
            if not isinstance(record, dict) or not isinstance(record.get("image"), str) or not record["image"]:
                skip('no "image" string', origin)
                continue
            caption = record.get("caption", "")
            if not isinstance(caption, str):
                skip('"caption" is not a string', origin)
                continue
            image = record["image"]
            if not image.startswith(("http://", "https://", "data:")):
                image = str((source.parent / image).resolve()) if not Path(image).is_absolute() else image
            yield Document(image, caption.strip(), origin)


async def _load_image(document: Document, loader: ImageLoader) -> tuple[bytes, str, str | None]:
    """The document's image bytes, MIME type and source URL, verified like a chat image."""
    from gateway.images.verify import verify_image

    if document.image.startswith(("http://", "https://", "data:")):
        loaded = await loader.load(document.image)
        return loaded.data, loaded.mime, loaded.source_url
    data = Path(document.image).read_bytes()
    info = verify_image(data, loader.policy)
    return data, info.mime, None


def _queue(
    source: Path, settings: Settings, tenant: str, model: str, user: str | None
) -> tuple[int, int, Counter[str], dict[str, str]]:
    """Append every valid document to the journal (+ its image to the BlobStore). Returns counts."""
    import hashlib

    from gateway.images import ImageError, ImageLoader
    from gateway.journal import BlobStore, Exchange, ImageRef, Journal

    journal = Journal(settings.journal_path)
    blobs = BlobStore(settings.images_dir)
    loader = ImageLoader.from_settings(settings)
    skipped: Counter[str] = Counter()
    examples: dict[str, str] = {}
    queued = already = 0

    async def run() -> None:
        nonlocal queued, already
        documents = list(_documents(source, skipped, examples))
        with _progress() as progress:
            task = progress.add_task("Reading documents", total=len(documents))
            for document in documents:
                progress.advance(task)
                try:
                    data, mime, source_url = await _load_image(document, loader)
                except FileNotFoundError:
                    skipped["image file not found"] += 1
                    examples.setdefault("image file not found", document.origin)
                    continue
                except ImageError as exc:
                    reason = f"image refused ({exc.code})"
                    skipped[reason] += 1
                    examples.setdefault(reason, f"{document.origin}: {exc.message}")
                    continue
                except OSError as exc:
                    skipped["image unreadable"] += 1
                    examples.setdefault("image unreadable", f"{document.origin}: {exc}")
                    continue
                sha = hashlib.sha256(data).hexdigest()
                # Same tenant + image + caption -> same id: re-running an ingest adds nothing twice.
                exchange_id = uuid.uuid5(_DOCUMENT_NAMESPACE, f"{tenant}\0{sha}\0{document.caption}").hex
                if journal.get(exchange_id) is not None:
                    already += 1
                    continue
                blobs.put(data, sha)
                journal.append(Exchange(
                    id=exchange_id, created_at=time.time(), endpoint="ingest", model=model, tenant=tenant,
                    user=user, messages=[], images=[ImageRef(sha, mime, source_url)], answer=document.caption,
                    finish_reason=None, usage=None, latency_ms=0.0,
                ))
                queued += 1
        await loader.fetcher.close()

    asyncio.run(run())
    journal.close()
    return queued, already, skipped, examples


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    )


def _drain(settings: Settings, threads: int, *, rebuild: bool = False) -> bool:
    """Embed the journal's backlog in this process. False if a running gateway holds the store.
    `rebuild`: first recreate the store with this version's schema and queue the whole journal."""
    from gateway.cli_env import models_offline_if_unreachable
    from gateway.journal import BlobStore, Journal
    from gateway.memory.embed import EmbedderError
    from gateway.memory.ingest import IngestWorker
    from gateway.memory.service import embedder_from_settings, open_store, text_encoders_from_settings
    from gateway.memory.store.base import SchemaMismatch, StoreError, StoreLocked

    journal = Journal(settings.journal_path)
    store = open_store(settings)
    try:
        if rebuild:
            store.recreate()
            journal.requeue_all()
        else:
            store.ensure_schema()
    except StoreLocked:
        journal.close()
        return False
    except SchemaMismatch as exc:
        journal.close()
        raise _fail(str(exc)) from None
    offline = models_offline_if_unreachable(settings)
    embedder = embedder_from_settings(settings, threads=threads)
    worker = IngestWorker(journal, BlobStore(settings.images_dir), embedder, store,
                          batch_size=settings.embed_batch_size,
                          text=text_encoders_from_settings(settings, threads=threads))
    try:
        with _progress() as progress:
            task = progress.add_task("Reindexing" if rebuild else "Embedding", total=journal.backlog())
            worker.drain(on_progress=lambda n: progress.advance(task, n))
    except (EmbedderError, StoreError) as exc:
        raise _fail(f"{exc}{_HUB_UNREACHABLE if offline else ''}\n"
                    "The documents stay queued: run the ingest again, or start the gateway.") from None
    finally:
        store.close()
        journal.close()
    stats = worker.stats
    if stats.images_unusable:
        err.print(f"[yellow]{stats.images_unusable} image(s) could not be embedded (missing or undecodable)[/]")
    return True


def _watch_backlog(settings: Settings, timeout_s: float) -> None:
    from gateway.journal import Journal

    journal = Journal(settings.journal_path)
    start = journal.backlog()
    deadline = time.monotonic() + timeout_s
    with _progress() as progress:
        task = progress.add_task("Gateway embedding", total=start)
        while (left := journal.backlog()) > 0 and time.monotonic() < deadline:
            progress.update(task, completed=max(0, start - left))
            time.sleep(0.5)
        progress.update(task, completed=max(0, start - journal.backlog()))
    left = journal.backlog()
    journal.close()
    if left:
        err.print(f"[yellow]{left} exchange(s) still queued; the gateway keeps ingesting them.[/]")


@app.command()
def ingest(
    source: Annotated[Path, typer.Argument(
        exists=True, readable=True, resolve_path=True,
        help="A folder of images (captions from same-name .txt files) or a JSONL file of "
             '{"image": PATH|URL, "caption": TEXT} lines (paths relative to the file).',
    )],
    tenant: Annotated[str | None, typer.Option(help="Tenant the documents belong to. Default: the default tenant.")] = None,
    model: Annotated[str, typer.Option(help="Label stored as the exchanges' model (filterable in search).")] = "ingest",
    user: Annotated[str | None, typer.Option(help="Value stored as the exchanges' user (filterable).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime threads for embedding in this process.")] = 2,
    wait: Annotated[bool, typer.Option(help="Wait until everything is embedded (with progress).")] = True,
    timeout: Annotated[float, typer.Option(help="With a running gateway: how long to watch its backlog (s).")] = 3600,
) -> None:
    """Load documents into memory: each image (with its caption as the answer) becomes a searchable exchange.

    Re-running on the same files adds nothing twice. Images are verified exactly like chat images;
    anything refused is listed in the summary with the reason.
    """
    settings = _settings()
    if not settings.memory_enabled:
        raise _fail("memory is disabled (VISIONRAG_MEMORY_ENABLED=false)")
    tenant = tenant or settings.default_tenant
    queued, already, skipped, examples = _queue(source, settings, tenant, model, user)

    console.print(f"[bold]queued[/]: {queued}    [bold]already ingested before[/]: {already}    "
                  f"[bold]skipped[/]: {sum(skipped.values())}")
    for reason, count in skipped.most_common():
        console.print(f"  skipped {count}: {reason}, e.g. {examples[reason]}", soft_wrap=True)
    if not wait:
        return
    if not _drain(settings, threads):
        err.print("A running gateway holds the vector store; it ingests the queued documents in the background.")
        _watch_backlog(settings, timeout)


# --- search ---------------------------------------------------------------------------------------------
@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="Text to search for (or use --image).")] = None,
    image: Annotated[str | None, typer.Option(help="Search by this image: a file path or an http(s) URL.")] = None,
    target: Annotated[Target, typer.Option(
        help="Stored vector to compare with: CLIP's image/question/answer, the sentence model's passages "
             "(text), BM25 (terms); 'all' fuses every one the query can use.")] = Target.all,
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

    from gateway.cli_env import gateway_url
    from gateway.memory.protocol import SearchRequest

    if (text is None) == (image is None):
        raise _fail("give a TEXT argument or --image, not both")
    settings = _settings()
    filters: dict[str, object] = {"model": model or None, "user": user, "time_from": since, "time_to": until}
    try:
        query = SearchRequest.model_validate({"text": text, "image": image, "target": target.value,
                                              "limit": limit, "filters": filters})
    except ValidationError as exc:
        raise _fail("; ".join(error["msg"] for error in exc.errors())) from None

    result = None if gateway else _local_search(settings, query, tenant or settings.default_tenant)
    if result is None:
        body = query.model_dump(mode="json", exclude_none=True)
        if image is not None:
            body["image"] = _image_url(image)
        result = _http_search(gateway or gateway_url(settings), body, api_key)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table(title=f"{len(result['data'])} result(s), target={result['target']}")
    for column in ("score", "time", "model", "question", "answer", "image", "exchange"):
        table.add_column(column, overflow="fold")
    for hit in result["data"]:
        # Short ids: the full ones are in --json, and GET /exchanges/{id} / /images/{sha256} serve them.
        table.add_row(f"{hit['score']:.4f}", str(hit["time"])[:16].replace("T", " "), hit["model"],
                      _short(hit["question"]),
                      _short(hit["answer"]), (hit.get("image_sha256") or "")[:8], hit["exchange_id"][:8])
    console.print(table)


def _image_url(image: str) -> str:
    if image.startswith(("http://", "https://", "data:")):
        return image
    import base64
    import mimetypes

    path = Path(image)
    if not path.is_file():
        raise _fail(f"no such image file: {image}")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _local_search(settings: Settings, query: SearchRequest, tenant: str) -> dict | None:
    """Search the local store with the memory services in this process; None if a gateway holds it."""
    from gateway.cli_env import gateway_url, models_offline_if_unreachable
    from gateway.images import ImageError, ImageLoader
    from gateway.journal import Journal
    from gateway.memory.embed import EmbedderError, ImageDecodeError
    from gateway.memory.protocol import SearchHit, SearchResponse
    from gateway.memory.search import Searcher
    from gateway.memory.service import embedder_from_settings, open_store, text_encoders_from_settings
    from gateway.memory.store.base import SearchFilter, StoreError, StoreLocked
    from gateway.memory.texts import JournalTexts

    store = open_store(settings)
    try:
        store.ensure_schema()
    except StoreLocked:
        store.close()
        return None
    except StoreError as exc:  # SchemaMismatch names `visionrag reindex`
        store.close()
        raise _fail(str(exc)) from None
    try:
        image = None
        offline = False
        if query.image is not None:
            image = asyncio.run(_query_image(query.image, ImageLoader.from_settings(settings)))
        offline = models_offline_if_unreachable(settings)
        flt = SearchFilter(tenant=tenant, time_from=query.filters.time_from, time_to=query.filters.time_to,
                           models=query.filters.models, user=query.filters.user)
        journal = Journal(settings.journal_path)
        try:
            # Texts come from the journal (the store keeps none), and forgotten exchanges never come back.
            outcome = Searcher(embedder_from_settings(settings), store, JournalTexts(journal),
                               text_encoders_from_settings(settings)).search(
                flt, text=query.text, image=image, target=query.target, limit=query.limit)
        finally:
            journal.close()
    except FileNotFoundError:
        raise _fail(f"no such image file: {query.image}") from None
    except ImageError as exc:
        raise _fail(f"image refused ({exc.code}): {exc.message}") from None
    except ImageDecodeError:
        raise _fail("the image cannot be decoded") from None
    except (EmbedderError, StoreError) as exc:
        raise _fail(str(exc) + (_HUB_UNREACHABLE if offline else "")) from None
    finally:
        store.close()
    images = gateway_url(settings) + "/images/"
    response = SearchResponse(
        data=[SearchHit.from_found(found, image_url=images + found.image_sha256 if found.image_sha256 else None)
              for found in outcome.hits],
        target=query.target,
        query_type="text" if query.text is not None else "image",
        timings_ms={"embed": round(outcome.embed_ms, 3), "store": round(outcome.store_ms, 3)},
    )
    return response.model_dump(mode="json")


async def _query_image(image: str, loader: ImageLoader) -> bytes:
    try:
        data, _, _ = await _load_image(Document(image, "", image), loader)
    finally:
        await loader.fetcher.close()
    return data


def _http_search(base_url: str, body: dict[str, object], api_key: str | None) -> dict:
    return _gateway_call("post", base_url, "/search", api_key, json=body)


def _gateway_call(method: str, base_url: str, path: str, api_key: str | None, expect: int = 200,
                  **kwargs: object) -> dict:
    """One request to a running gateway; any failure ends the command with what the gateway said."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, base_url.rstrip("/") + path, headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the gateway at {base_url}: {exc}") from None
    if response.status_code == expect == 204:
        return {}
    try:
        payload = response.json()
    except ValueError:
        raise _fail(f"the gateway at {base_url} answered HTTP {response.status_code} without JSON") from None
    if response.status_code != expect:
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        raise _fail(f"{path} failed (HTTP {response.status_code}): {message or payload}")
    return payload


# --- list -----------------------------------------------------------------------------------------------
@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Whose exchanges. Default: the default tenant.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page (its next cursor).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models (repeatable).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this client `user`.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only exchanges at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only exchanges at or before this time (UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the exchanges as JSON lines.")] = False,
) -> None:
    """List past exchanges, most recent first, a page at a time (like GET /exchanges).

    Reads the journal through the memory service; works while a gateway runs.
    """
    from gateway.errors import InvalidRequest
    from gateway.journal import BlobStore, Journal
    from gateway.memory.browse import ExchangeQuery
    from gateway.memory.service import Memory

    settings = _settings()

    def unix(moment: datetime | None) -> float | None:
        return None if moment is None else (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    journal = Journal(settings.journal_path)
    memory = Memory.from_settings(settings, journal, BlobStore(settings.images_dir))
    query = ExchangeQuery(limit=limit, cursor=cursor, time_from=unix(since), time_to=unix(until),
                          models=tuple(model or ()), user=user)

    async def run():
        try:
            return await memory.list_exchanges(tenant or settings.default_tenant, query)
        finally:
            await memory.image_loader.fetcher.close()

    try:
        page = asyncio.run(run())
    except InvalidRequest as exc:
        raise _fail(exc.message) from None
    finally:
        journal.close()
    if as_json:
        for e in page.exchanges:
            console.print_json(json.dumps({
                "id": e.id, "time": datetime.fromtimestamp(e.created_at, tz=UTC).isoformat(), "model": e.model,
                "user": e.user, "status": e.status, "question": e.question, "answer": e.answer,
                "images": [i.sha256 for i in e.images]}))
    else:
        table = Table(title=f"{len(page.exchanges)} exchange(s), most recent first")
        for column in ("time", "model", "user", "question", "answer", "image", "exchange"):
            table.add_column(column, overflow="fold")
        for e in page.exchanges:
            table.add_row(datetime.fromtimestamp(e.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M"), e.model,
                          e.user or "", _short(e.question), _short(e.answer),
                          e.images[0].sha256[:8] if e.images else "", e.id)
        console.print(table)
    if page.next_cursor:
        err.print(f"more: --cursor {page.next_cursor}")


# --- forgetting -------------------------------------------------------------------------------------------
@app.command()
def forget(
    exchange_id: Annotated[list[str] | None, typer.Argument(help="Exchange ids to forget.")] = None,
    user: Annotated[str | None, typer.Option(help="Forget every exchange of this client `user`.")] = None,
    before: Annotated[datetime | None, typer.Option(help="Forget every exchange older than this (UTC).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant whose exchanges these are (default tenant).")] = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Forget exchanges everywhere: journal, vector store, and the images no other exchange uses.

    Give ids, or --user and/or --before. While a gateway holds the embedded store (or with --gateway),
    the gateway does it (for the API key's tenant)."""
    from gateway.cli_env import gateway_url

    if not exchange_id and user is None and before is None:
        raise _fail("give exchange ids, --user, --before, or --user with --before")
    if exchange_id and (user is not None or before is not None):
        raise _fail("give exchange ids or --user/--before, not both")
    settings = _settings()
    when = None if before is None else (before if before.tzinfo else before.replace(tzinfo=UTC))
    count = None if gateway else _local_forget(settings, tenant or settings.default_tenant, exchange_id or [],
                                               user, when.timestamp() if when else None)
    if count is None:
        base = gateway or gateway_url(settings)
        if exchange_id:
            for one in exchange_id:
                _gateway_call("delete", base, f"/exchanges/{one}", api_key, expect=204)
            count = len(exchange_id)
        else:
            body = {"user": user, "before": when.isoformat() if when else None}
            count = _gateway_call("post", base, "/exchanges/forget", api_key,
                                  json={k: v for k, v in body.items() if v is not None})["deleted"]
    console.print(f"forgotten: {count}")


def _local_forget(settings: Settings, tenant: str, ids: list[str], user: str | None,
                  before: float | None) -> int | None:
    """Forget in this process; None if a running gateway holds the embedded store."""
    from gateway.journal import BlobStore, Journal
    from gateway.memory.forget import Forgetter
    from gateway.memory.service import open_store
    from gateway.memory.store.base import StoreError, StoreLocked
    from gateway.memory.thumbnails import Thumbnails

    store = open_store(settings)
    try:
        store.ensure_schema()
    except StoreLocked:
        store.close()
        return None
    except StoreError:
        pass  # the journal's part needs no store; finishing, below, says what is left
    journal = Journal(settings.journal_path)
    blobs = BlobStore(settings.images_dir)
    forgetter = Forgetter(journal, blobs, store, Thumbnails(blobs.root.parent / "thumbnails"))
    try:
        if ids:
            deleted = forgetter.forget(tenant, ids)
            if missing := sorted(set(ids) - set(deleted)):
                err.print(f"not found in tenant {tenant!r}: {', '.join(missing)}")
            count = len(deleted)
        else:
            count = forgetter.forget_where(tenant, user=user, before=before)
        try:
            forgetter.finish()  # with what an earlier run or a stopped gateway left unfinished
        except StoreError as exc:
            err.print(f"[yellow]warning:[/yellow] the vector store refused to delete the points ({exc}). "
                      "The exchanges are forgotten already (nothing reads them); their points are deleted "
                      "at the gateway's next start or by the next `visionrag forget`.")
        return count
    finally:
        journal.close()
        store.close()


# --- maintenance ------------------------------------------------------------------------------------------
@app.command()
def reindex(
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime threads for embedding in this process.")] = 2,
) -> None:
    """Rebuild the vector store from the journal with this version's vectors (stop the gateway first).

    The journal is the source of truth: the store is dropped, recreated with the current schema and
    refilled from every journaled exchange, with a progress bar. Needed when the gateway reports that
    the store was made with other vectors; harmless otherwise (only time).
    """
    settings = _settings()
    if not settings.memory_enabled:
        raise _fail("memory is disabled (VISIONRAG_MEMORY_ENABLED=false)")
    if not _drain(settings, threads, rebuild=True):
        raise _fail("a running gateway holds the vector store: stop it, then run `visionrag reindex` again")
    console.print("reindexed: the store now holds every journaled exchange with the current vectors")


@app.command()
def optimize() -> None:
    """Build the embedded store's HNSW index now (stop the gateway first: it holds the store).

    Until indexed, queries are exact brute force: fast for tenant-filtered searches, slower for one
    big tenant. A Qdrant server indexes itself; this is for the embedded store.
    """
    from gateway.memory.service import open_store
    from gateway.memory.store.base import StoreError

    settings = _settings()
    store = open_store(settings)
    try:
        store.ensure_schema()
        before = store.stats()
        started = time.monotonic()
        with console.status(f"Indexing {before.points} points (minutes at 100k)..."):
            # This process serves nothing else: index in-process (EdgeStore.optimize() would fork a child).
            changed = store.optimize_here() if hasattr(store, "optimize_here") else store.optimize()
        after = store.stats()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    console.print(f"{'indexed' if changed else 'already optimal'}: {after.points} points, "
                  f"{after.indexed_vectors} indexed vectors, {time.monotonic() - started:.1f} s")


@app.command()
def status(
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show the journal's backlog and the vector store's size (from the running gateway when it holds the store)."""
    from gateway.cli_env import gateway_url
    from gateway.journal import Journal
    from gateway.memory.service import open_store
    from gateway.memory.store.base import StoreError, StoreLocked

    settings = _settings()
    table = Table(show_header=False)
    table.add_row("data", str(settings.data_dir))
    if gateway:
        _gateway_status(table, gateway, api_key)
        console.print(table)
        return
    journal = Journal(settings.journal_path)
    table.add_row("journal", f"{journal.count()} exchanges, {journal.backlog()} waiting to be embedded")
    journal.close()
    store = open_store(settings)
    try:
        stats = store.stats()
        table.add_row("store", f"{stats.backend} at {stats.location}: {stats.points} points, "
                      f"{stats.indexed_vectors if stats.indexed_vectors is not None else 'n/a'} indexed vectors")
    except StoreLocked:
        _gateway_status(table, gateway_url(settings), api_key)
    except StoreError as exc:
        table.add_row("store", f"[red]{exc}[/]")
    finally:
        store.close()
    console.print(table)


def _gateway_status(table: Table, base_url: str, api_key: str | None) -> None:
    """The running gateway's GET /memory/stats: every tenant's counts for an operator (or an open
    gateway), one tenant's for a tenant's key."""
    stats = _gateway_call("get", base_url, "/memory/stats", api_key)
    if "store" not in stats:  # a tenant's view
        table.add_row("store", f"held by the gateway at {base_url}: tenant {stats.get('tenant')}: "
                      f"{stats.get('points')} points, {stats.get('backlog')} waiting to be embedded")
        return
    store = stats["store"]
    if "error" in store:
        table.add_row("store", f"held by the gateway at {base_url}: [red]{store['error']}[/]")
    else:
        indexed = store.get("indexed_vectors")
        table.add_row("store", f"{store.get('backend')}, held by the gateway at {base_url}: {store.get('points')} "
                      f"points, {indexed if indexed is not None else 'n/a'} indexed vectors, "
                      f"{stats.get('backlog')} exchanges waiting to be embedded")
    for tenant, counts in sorted(stats.get("tenants", {}).items()):
        table.add_row(f"tenant {tenant}", f"{counts.get('points')} points, {counts.get('backlog')} waiting")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: VISIONRAG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: VISIONRAG_PORT).")] = None,
) -> None:
    """Run the gateway (uvicorn, one process) with the settings from the environment and `.env`."""
    import uvicorn

    from gateway.api.app import create_app

    # A new gateway: its own settings, as uvicorn would read them, not those `make run` recorded.
    settings = Settings()
    # log_config=None: uvicorn's loggers keep what create_app set (gateway.logs) instead of its own format.
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                access_log=False, log_config=None)


if __name__ == "__main__":
    app()
