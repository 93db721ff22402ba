"""`visionrag ingest`: bulk-load documents into memory.

Bulk ingest goes through the same queue as chats: documents become journal records (endpoint "ingest")
and image blobs, then the same ingest worker embeds them. If a running gateway holds the embedded
store, the CLI leaves the queue to that gateway's worker and watches the backlog drain; otherwise it
drains the queue itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.env import load_settings
from gateway.cli.local import drain, run_local
from gateway.cli.output import console, err, fail, progress

if TYPE_CHECKING:
    from gateway.images import ImageLoader
    from gateway.journal import Journal
    from gateway.memory.service import Memory
    from gateway.runtime import Runtime

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
# Fixed forever: bulk-ingest exchange ids derive from it, which makes re-running an ingest a no-op.
_DOCUMENT_NAMESPACE = uuid.UUID("0d6f0f3c-1b1e-4f43-9b8a-6a4c1d9e5b21")


@dataclass(slots=True)
class Document:
    """One thing to ingest: where its image is (path or URL), its caption, and where it was listed."""

    image: str
    caption: str
    origin: str  # "file.jsonl:12" or the image path, for the skip report


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
    settings = load_settings()
    if not settings.memory_enabled:
        raise fail("memory is disabled (VISIONRAG_MEMORY_ENABLED=false)")
    owner = tenant or settings.default_tenant

    async def work(runtime: Runtime, memory: Memory) -> None:
        queued, already, skipped, examples = await _queue(runtime, source, owner, model, user)
        console.print(f"[bold]queued[/]: {queued}    [bold]already ingested before[/]: {already}    "
                      f"[bold]skipped[/]: {sum(skipped.values())}")
        for reason, count in skipped.most_common():
            console.print(f"  skipped {count}: {reason}, e.g. {examples[reason]}", soft_wrap=True)
        if not wait:
            return
        if not drain(runtime, memory):
            err.print("A running gateway holds the vector store; it ingests the queued documents in the background.")
            _watch_backlog(runtime.journal, timeout)

    run_local(settings, work, threads=threads)


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


async def _queue(
    runtime: Runtime, source: Path, tenant: str, model: str, user: str | None
) -> tuple[int, int, Counter[str], dict[str, str]]:
    """Append every valid document to the journal (+ its image to the BlobStore). Returns counts."""
    import hashlib

    from gateway.images import ImageError
    from gateway.journal import Exchange, ImageRef

    journal, blobs = runtime.journal, runtime.blobs
    skipped: Counter[str] = Counter()
    examples: dict[str, str] = {}
    queued = already = 0
    documents = list(_documents(source, skipped, examples))
    with progress() as bar:
        task = bar.add_task("Reading documents", total=len(documents))
        for document in documents:
            bar.advance(task)
            try:
                data, mime, source_url = await _load_image(document, runtime.loader)
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
    return queued, already, skipped, examples


def _watch_backlog(journal: Journal, timeout_s: float) -> None:
    start = journal.backlog()
    deadline = time.monotonic() + timeout_s
    with progress() as bar:
        task = bar.add_task("Gateway embedding", total=start)
        while (left := journal.backlog()) > 0 and time.monotonic() < deadline:
            bar.update(task, completed=max(0, start - left))
            time.sleep(0.5)
        bar.update(task, completed=max(0, start - journal.backlog()))
    left = journal.backlog()
    if left:
        err.print(f"[yellow]{left} exchange(s) still queued; the gateway keeps ingesting them.[/]")
