"""What memory in the answer costs a chat: retrieval's added latency, and CPU per exchange.

    make bench-memory-retrieval     # or: .venv/bin/python -m bench.memory_chat_retrieval  (~10 min on 2 cores)

Full-size random-weight CLIP ViT-B/32 (the real FLOPs), the genuine all-MiniLM-L6-v2 and BM25, the
embedded store (Qdrant Edge), one onnxruntime thread (the gateway's default), all in this process.

Added latency. At 10k and then 100k stored exchanges, indexed (HNSW, as the gateway builds it after its
first 20k points), 90% of them in the asking tenant: `Augmenter.augment`, the whole step a chat with
`"visionrag": {"memory": true}` takes before it is forwarded (embed the question and the image, one fused
store query, the hits' texts from the journal, the prompt and every source counted by the upstream's
`/tokenize`, the system message written). 80 exchanges are real (ingested through the real worker:
every vector the models give) and are what questions find; the rest are synthetic points of the same
schema that the store must search past. Questions: the past question asked again in other words, as
text only, with a new image (its vector computed), and with that exchange's own image (whose vector
memory already holds: not computed again). The upstream is `bench.fake_upstream` in its own process
(its `/tokenize` answers as vLLM's does). Baseline in the same run: the same query vectors computed by
fastembed alone (the floor: what any retrieval must spend), and memory off (the chat's path today).

CPU per exchange (at the first size). 48 more exchanges (image, question, ~240-word answer) ingested
alone; then the same 48 again with new images and ids, each retrieved for first as a chat with memory
does (finding its earlier copy by its text, so sources are counted and written too), then ingested (which takes the vectors retrieval
computed instead of embedding them again): with one chat at a time, and with 8 chats retrieving at once
(whose queries share model runs, gateway.memory.batching). This process's CPU time, threads included.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.gateway_overhead import free_port, start
from bench.memory_hybrid_latency import points as synthetic_points
from bench.memory_ingest import photo_png
from bench.memory_quality import corpus
from gateway.images import LoadedImage
from gateway.journal import Exchange, ImageRef
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.ingest import IngestWorker
from gateway.memory.reuse import VectorReuse
from gateway.memory.search import text_probes
from gateway.memory.service import Memory
from gateway.memory.store.edge import EdgeStore
from gateway.memory.text_embed import TextEncoders
from gateway.proxy.augment import AugmentConfig, Augmenter, ChatTurn
from gateway.proxy.protocol import MemoryOptions
from gateway.proxy.tokens import TokenCounter
from gateway.proxy.upstream import UpstreamPool
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"
TEXT_MODELS = ROOT / "models" / "text"
REAL = 80
TENANT = "main"  # synthetic points: 90% in `main`, the rest in 100 small tenants
ASKED_AGAIN = "Could you remind me: {}"
CONCURRENCY = (1, 8)  # chats retrieving at once


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(samples: list[float]) -> list[float]:
    return [round(float(np.percentile(samples, 50)), 2), round(float(np.percentile(samples, 99)), 2)]


def exchange(question: str, answer: str, sha: str) -> Exchange:
    return Exchange(
        id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="fake-vlm", tenant=TENANT,
        user=None, messages=[{"role": "user", "text": question}], images=[ImageRef(sha, "image/png")],
        answer=answer, finish_reason="stop", usage=None, latency_ms=1.0,
    )


def loaded(data: bytes, sha: str) -> LoadedImage:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return LoadedImage(data, "image/png", sha, 256, 256, None, url)


def chat(question: str, image: LoadedImage | None) -> dict:
    content: list[dict] = [{"type": "text", "text": question}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": image.data_url}})
    return {"model": "fake-vlm", "messages": [{"role": "user", "content": content}], "max_tokens": 256}


class Bench:
    def __init__(self, data_dir: Path, upstream: str, clip: ClipEmbedder, text: TextEncoders) -> None:
        self.journal = SQLiteJournal(data_dir / "journal.sqlite3")
        self.blobs = DiskBlobStore(data_dir / "images")
        self.store = EdgeStore(data_dir / "shard")
        self.store.ensure_schema()
        self.clip, self.text = clip, text
        self.worker = IngestWorker(self.journal, self.blobs, clip, self.store, batch_size=16, reuse=VectorReuse(),
                                   text=text)
        settings = Settings(_env_file=None, data_dir=data_dir)
        from gateway.images import ImageLoader
        self.memory = Memory(self.journal, self.blobs, clip, self.store, self.worker,
                             ImageLoader.from_settings(settings), owns_loader=True, text=text)
        self.pool = UpstreamPool([upstream], api_key=None, connect_timeout_s=5, read_timeout_s=30,
                                 health_interval_s=60)
        # No time budget here: what is measured is how long retrieval takes, not where it is cut off.
        self.augmenter = Augmenter(self.memory, TokenCounter(self.pool), AugmentConfig(timeout_s=60), 4)

    async def augment(self, question: str, image: LoadedImage | None, memory: bool = True) -> tuple[float, str]:
        payload = chat(question, image)
        turn = ChatTurn(TENANT, uuid.uuid4().hex, None, question, [image] if image else [])
        started = time.perf_counter()
        use = await self.augmenter.augment(payload, turn, MemoryOptions(memory=memory))
        return (time.perf_counter() - started) * 1000, use.reason

    def ingest(self, items: list[tuple[str, str, bytes]]) -> list[Exchange]:
        rows = []
        for question, answer, data in items:
            rows.append(exchange(question, answer, self.blobs.put(data)))
            self.journal.append(rows[-1])
        self.worker.drain()
        return rows

    def close(self) -> None:
        self.store.close()
        self.journal.close()


def floor_ms(b: Bench, question: str, image: bytes | None) -> float:
    """fastembed alone computing the same query vectors retrieval computes."""
    started = time.perf_counter()
    if image is not None:
        b.clip.embed_images([image])
    text_probes(b.clip, b.text, question, ("question", "answer", "text", "terms"))
    return (time.perf_counter() - started) * 1000


KINDS = {"text": "text only", "new_image": "text + a new image", "same_image": "text + an image asked about again"}


async def latency(b: Bench, real: list[tuple[str, str, bytes]], samples: int) -> dict:
    asks = [(ASKED_AGAIN.format(q), img) for q, _, img in real]
    again = {img: loaded(img, b.blobs.put(img)) for _, _, img in real}
    # A new image per question: its vector must be computed (an image already in memory is not).
    new = [loaded(data, b.blobs.put(data)) for data in (photo_png(5000 + i) for i in range(samples))]
    for q, img in asks[:8]:  # warm-up: first runs allocate, connections open
        await b.augment(q, again[img])
        await b.augment(q, None)
    out: dict = {}
    for kind in KINDS:
        added, floor, off, reasons = [], [], [], {}
        for i in range(samples):
            q, img = asks[i % len(asks)]
            image = {"text": None, "new_image": new[i], "same_image": again[img]}[kind]
            ms, reason = await b.augment(q, image)
            added.append(ms)
            reasons[reason] = reasons.get(reason, 0) + 1
            floor.append(floor_ms(b, q, image.data if image else None))
            off.append((await b.augment(q, image, memory=False))[0])
        out[kind] = {"added_ms": percentiles(added), "floor_ms": percentiles(floor), "off_ms": percentiles(off),
                     "reasons": reasons}
    return out


async def cpu_per_exchange(b: Bench, items: list[tuple[str, str, bytes]]) -> dict:
    cpu0 = cpu_s()
    b.ingest(items)
    alone = (cpu_s() - cpu0) / len(items) * 1000
    out = {"ingest_alone_cpu_ms": round(alone, 1)}
    for concurrency in CONCURRENCY:
        gate = asyncio.Semaphore(concurrency)

        async def ask(question: str, data: bytes, gate: asyncio.Semaphore = gate) -> None:
            # As the chat does: retrieval first (the question is the client's own), then it is journaled.
            image = loaded(data, b.blobs.put(data))
            turn = ChatTurn(TENANT, uuid.uuid4().hex, None, question, [image])
            async with gate:
                await b.augmenter.augment(chat(question, image), turn, MemoryOptions(memory=True))

        # The same questions and answers with new images: an image already in memory is not embedded
        # again, which would flatter retrieval here.
        fresh = [(q, a, photo_png(9000 + 100 * concurrency + i)) for i, (q, a, _) in enumerate(items)]
        reused, cpu0 = b.worker.reuse.reused, cpu_s()
        await asyncio.gather(*(ask(question, data) for question, _, data in fresh))
        b.ingest(fresh)
        with_retrieval = (cpu_s() - cpu0) / len(items) * 1000
        out[f"concurrency_{concurrency}"] = {
            "retrieval_and_ingest_cpu_ms": round(with_retrieval, 1), "ratio": round(with_retrieval / alone, 3),
            "vectors_reused": b.worker.reuse.reused - reused}
    return out


async def run(args: argparse.Namespace, upstream: str) -> dict:
    pairs, _ = corpus()
    real = [(q, a, photo_png(1000 + i)) for i, (q, a) in enumerate(pairs[:REAL])]
    cpu_items = [(q, a, photo_png(2000 + i)) for i, (q, a) in enumerate(pairs[REAL:REAL + args.cpu_exchanges])]
    clip = ClipEmbedder(cache_dir=FULL_CLIP, threads=1)
    text = TextEncoders(cache_dir=TEXT_MODELS, threads=1)
    clip.load()
    text.load()
    report: dict = {"sizes": {}}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="visionrag-bench-retrieval-") as tmp:
            b = Bench(Path(tmp), upstream, clip, text)
            await b.pool.start()
            try:
                print(f"{size} exchanges: ingesting {REAL} real, adding {size - REAL} synthetic, indexing ...",
                      file=sys.stderr, flush=True)
                b.ingest(real)
                rng = np.random.default_rng(1)
                for start in range(REAL, size, 512):
                    b.store.upsert(synthetic_points(start, min(512, size - start), rng))
                started = time.perf_counter()
                b.store.optimize()
                row = {"optimize_s": round(time.perf_counter() - started, 1)}
                row |= await latency(b, real, args.samples)
                if size == args.sizes[0]:
                    report["cpu"] = await cpu_per_exchange(b, cpu_items)
                report["sizes"][str(size)] = row
            finally:
                await b.pool.close()
                await b.memory.image_loader.fetcher.close()
                b.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--samples", type=int, default=200, help="questions per kind and size")
    parser.add_argument("--cpu-exchanges", type=int, default=48)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_chat_retrieval.json")
    args = parser.parse_args()
    if not (FULL_CLIP / ".built").exists() or not (TEXT_MODELS / ".built").exists():
        raise SystemExit("models missing: run `make memory-models`")
    port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)], port, core=None)
    try:
        report = asyncio.run(run(args, upstream.url))
    finally:
        upstream.stop()
    report |= {"python": platform.python_version(), "cores": os.cpu_count(),
               "versions": {p: version(p) for p in ("fastembed", "onnxruntime", "qdrant-edge-py")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print("| stored exchanges | question | added by memory p50 / p99 ms | the query's vectors computed by fastembed "
          "alone p50 / p99 ms | memory off p50 / p99 ms | target p50 |")
    print("|---|---|---|---|---|---|")
    for size, row in report["sizes"].items():
        for kind, label in KINDS.items():
            r, target = row[kind], 40 if kind == "text" else 150
            print(f"| {int(size):,} | {label} | "
                  f"{r['added_ms'][0]} / {r['added_ms'][1]} | {r['floor_ms'][0]} / {r['floor_ms'][1]} | "
                  f"{r['off_ms'][0]} / {r['off_ms'][1]} | ≤ {target} ms |")
    c = report["cpu"]
    print(f"\nCPU per exchange, ingest alone: {c['ingest_alone_cpu_ms']} ms (target: retrieval + ingest ≤ +10%)")
    for concurrency in CONCURRENCY:
        r = c[f"concurrency_{concurrency}"]
        print(f"  {concurrency} chat(s) at once: retrieval + ingest {r['retrieval_and_ingest_cpu_ms']} ms "
              f"({(r['ratio'] - 1) * 100:+.1f}%), {r['vectors_reused']} vectors reused")
    print("reasons:", {s: {k: row[k]["reasons"] for k in KINDS} for s, row in report["sizes"].items()})


if __name__ == "__main__":
    main()
