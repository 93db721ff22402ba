"""The gateway's configuration: one object, read from the environment and `.env`.

Every setting is `VISIONRAG_<NAME>` in the environment; `.env.example` documents each one.
Lists accept either JSON (`["a","b"]`) or a comma-separated string (`a,b`), because the
comma form is what people type in compose files and shells.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VISIONRAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        # `VISIONRAG_QDRANT_URL=` (as in .env.example) means "not set", not "set to the empty string".
        env_ignore_empty=True,
        extra="ignore",
        # A refused setting is reported without its value: API keys and other secrets stay out of logs.
        hide_input_in_errors=True,
    )

    # --- where the gateway listens -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    # `json`: one JSON object per log line (time, level, logger, message, tenant, exchange_id).
    log_format: Literal["text", "json"] = "text"

    # --- upstream: any OpenAI-compatible server (vLLM, Ollama, ...) ---------------------------
    # Base URLs including `/v1`. Several URLs are replicas of the same model.
    upstream_urls: CommaList = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    # The upstream's own key; clients never see it and never supply it.
    upstream_api_key: SecretStr | None = None
    upstream_connect_timeout_s: float = 5.0
    # Longest silence tolerated from the upstream (a whole non-streamed answer, or between chunks).
    upstream_read_timeout_s: float = 300.0
    # How often a replica taken out of rotation is probed on /health.
    upstream_health_interval_s: float = 5.0
    # Model for /predict (which names none); unset = the first model the upstream lists.
    default_model: str | None = None

    # --- clients -------------------------------------------------------------------------------
    # Gateway API keys, `tenant:key` or bare `key` (tenant derived from the key). Empty = open.
    api_keys: CommaList = Field(default_factory=list)
    default_tenant: str = "default"
    # Operator keys (bare keys) for cross-tenant routes: /metrics, all tenants' /memory/stats, /ready's detail.
    admin_keys: CommaList = Field(default_factory=list)

    # --- limits --------------------------------------------------------------------------------
    max_body_bytes: int = 32 * MiB
    max_images_per_request: int = 8
    max_image_bytes: int = 10 * MiB
    # Decoded pixels (width x height); refuses decompression bombs before they are decoded.
    max_image_pixels: int = 36_000_000
    # Decoded bytes (width x height x bytes per pixel, from the header): a small file can hold a 16-bit
    # raster. 36 Mpx at 4 bytes per pixel, how Pillow holds 8-bit RGB(A); 16-bit RGBA gets half the pixels.
    max_image_decoded_bytes: int = Field(default=144_000_000, gt=0)
    # What the image decodes in progress (search, ingest) may hold together; the rest wait their turn.
    # One of the largest images the limits accept needs twice its decoded bytes (its raster + an RGB copy).
    image_decode_budget_bytes: int = Field(default=288_000_000, gt=0)
    image_formats: CommaList = Field(default_factory=lambda: ["PNG", "JPEG", "WEBP", "GIF", "BMP"])

    # --- fetching http(s) image URLs -----------------------------------------------------------
    fetch_timeout_s: float = 5.0
    fetch_max_redirects: int = 3
    # Hosts (`name` or `name:port`) that may be fetched even if they resolve to a
    # non-public address: an intranet image server, or a test server on loopback.
    fetch_allow_hosts: CommaList = Field(default_factory=list)

    # --- storage -------------------------------------------------------------------------------
    # Journal (SQLite), image blobs and the embedded Qdrant shard live here.
    data_dir: Path = Path("data")
    # NORMAL survives the gateway being killed; FULL also survives power loss (an fsync per exchange).
    journal_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Shared state, for several gateway replicas and `visionrag worker`s (deploy/README.md):
    # postgresql://user:password@host:5432/db puts the journal in PostgreSQL instead of SQLite.
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=8, ge=1)
    # s3://bucket/prefix puts images (and their thumbnails) in S3-compatible storage instead of data_dir;
    # endpoint, region and credentials come from the standard AWS variables (AWS_ENDPOINT_URL, ...).
    blob_url: str | None = None
    # Whether this gateway runs ingest, the finisher of deletions and retention itself. Unset: yes with
    # the embedded journal, no with a shared one (then `visionrag worker`s do it).
    gateway_ingest: bool | None = None
    # A worker's claim on a batch of the backlog; past it (the worker died) another worker takes it.
    worker_lease_s: float = Field(default=120.0, gt=0)

    # --- memory: embedding and search (issue 3) -------------------------------------------------
    memory_enabled: bool = True
    # Unset: Qdrant's engine embedded in-process under data_dir. Set: a Qdrant server or Cloud.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "visionrag_exchanges"
    clip_text_model: str = "Qdrant/clip-ViT-B-32-text"
    clip_vision_model: str = "Qdrant/clip-ViT-B-32-vision"
    # fastembed's model cache; unset uses fastembed's default (FASTEMBED_CACHE_PATH or a temp dir).
    fastembed_cache_dir: Path | None = None
    # Text encoders beside CLIP (gateway.memory.store.schema): a sentence model for meaning, BM25 for terms.
    sentence_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    bm25_model: str = "Qdrant/bm25"
    # Their fastembed cache; unset uses fastembed_cache_dir.
    text_model_cache_dir: Path | None = None
    # onnxruntime threads for embedding; explicit because its default spin-waits on busy boxes.
    embed_threads: int = 1
    # CLIP and the sentence model with dynamic int8 weights (built from the fp32 ONNX beside it on the
    # first start that wants them, or by `make memory-models`), checked against fp32 at start-up
    # (gateway.memory.quantized): faster ingest, for workers above all.
    clip_int8: bool = False
    embed_batch_size: int = 16
    ingest_poll_interval_s: float = 0.5
    # CPU niceness of the ingest thread (0-19): chats get the CPU first, ingest takes what is left.
    ingest_nice: int = 10
    # Embedded store only: build the HNSW index (in a child process; search answers 503 meanwhile) once
    # this many points arrived since the last build AND nothing happened for memory_optimize_quiet_s.
    # quiet_s <= 0: never from the gateway; run `visionrag optimize` while it is stopped.
    memory_optimize_min_points: int = 20_000
    memory_optimize_quiet_s: float = 600.0
    # Embedded store only: a forgotten exchange's vectors and payload stay in the store's files until a
    # purge rewrites them; one runs this many seconds after the first deletion it covers (in a child
    # process; search answers 503 meanwhile). A Qdrant server purges by itself (deploy/qdrant-cloud.md).
    memory_purge_after_s: float = Field(default=600.0, gt=0)
    # Retention: exchanges older than this many days are forgotten (journal, store, images) by a sweep
    # every memory_retention_interval_s; 0 keeps them forever. Per tenant: `tenant:days` entries.
    memory_retention_days: float = Field(default=0.0, ge=0)
    memory_retention_tenant_days: CommaList = Field(default_factory=list)
    memory_retention_interval_s: float = Field(default=3600.0, gt=0)

    # --- memory in the answer: past exchanges as numbered sources (retrieval-augmented chat) ------
    # For chats that do not say; a request says with `"visionrag": {"memory": true}` (or false).
    memory_chat_default: bool = False
    # Sources per answer; a request may ask for 1-20 with `"visionrag": {"k": N}`.
    memory_chat_k: int = Field(default=4, ge=1, le=20)
    # Only the requesting `user`'s own exchanges; a request may ask with `"same_user": true`.
    memory_chat_same_user: bool = False
    # Minimum CLIP cosine similarity for a past exchange to be a source, per signal (image-image and
    # text-text similarities live on different scales).
    memory_min_image_score: float = Field(default=0.85, ge=-1.0, le=1.0)
    memory_min_text_score: float = Field(default=0.85, ge=-1.0, le=1.0)
    # The sentence model's cosine (its own scale) and BM25's IDF-weighted term score (unbounded).
    memory_min_sentence_score: float = Field(default=0.45, ge=-1.0, le=1.0)
    memory_min_terms_score: float = Field(default=6.0, ge=0.0)
    # Per vector of the store's schema, over the four above: `vector:score` entries (e.g. question:0.9).
    memory_min_scores: CommaList = Field(default_factory=list)
    # Retrieval plus token counting; past it the chat goes ahead without memory (header says so).
    memory_chat_timeout_ms: int = Field(default=500, gt=0)
    # Tokens of sources at most, and never more than the model's context leaves after the request and
    # its answer (counted with the upstream's /tokenize).
    memory_max_tokens: int = Field(default=1500, gt=0)
    # Room left for the answer when the request sets no max_tokens.
    memory_answer_reserve_tokens: int = Field(default=512, ge=0)
    # A source quotes at most this many characters of its past question, and as many of its past answer.
    memory_source_chars: int = Field(default=1200, ge=100)
    # Attach the sources' images too, for models that take several images in one prompt (Llama 3.2
    # Vision takes one: its sources are referred to by their question and answer).
    memory_attach_images: bool = False
    # Tests only: qdrant-client's local mode at this path instead of the embedded engine. It takes the
    # same calls as a server (so it exercises that adapter) but is brute force: never for production.
    qdrant_local_path: Path | None = None

    @field_validator("upstream_urls", "image_formats", "fetch_allow_hosts", "memory_retention_tenant_days",
                     "memory_min_scores", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _key_lists(cls, value: Any) -> Any:
        # Unlike other lists, empty items are kept so that `_keys` refuses them: `acme:$UNSET` or `a,,b`
        # is a mistake, and dropping it silently could leave a gateway open or a tenant locked out.
        if isinstance(value, str) and not value.strip().startswith("["):
            return [item.strip() for item in value.split(",")] if value.strip() else []
        return _split_list(value)

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _keys(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        # Messages name the entry by position, never by content: the content is a secret.
        name = f"VISIONRAG_{info.field_name.upper()}"
        tenants: dict[str, str] = {}
        for n, entry in enumerate(entries, start=1):
            tenant, sep, key = entry.partition(":") if info.field_name == "api_keys" else ("", "", entry)
            if not sep:
                key = entry
            if not key:
                raise ValueError(f"entry {n} of {name} has an empty key (an unset variable?); "
                                 "an empty key would let requests without a key in")
            if sep and not tenant:
                raise ValueError(f"entry {n} of {name} has an empty tenant before the `:`")
            if any(ch.isspace() for ch in entry):
                raise ValueError(f"entry {n} of {name} contains whitespace")
            if tenants.setdefault(key, tenant) != tenant:
                raise ValueError(f"entry {n} of {name} gives an earlier entry's key to another tenant")
        return entries

    @field_validator("upstream_urls")
    @classmethod
    def _strip_slash(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("at least one upstream URL is required")
        return [url.rstrip("/") for url in urls]

    @field_validator("image_formats")
    @classmethod
    def _upper(cls, formats: list[str]) -> list[str]:
        return [fmt.upper() for fmt in formats]

    @cached_property
    def tenants_by_key(self) -> dict[str, str]:
        """Map each gateway API key to its tenant."""
        mapping: dict[str, str] = {}
        for entry in self.api_keys:
            tenant, sep, key = entry.partition(":")
            if not sep:
                key = entry
                tenant = "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
            mapping[key] = tenant
        return mapping

    @property
    def shared_journal(self) -> bool:
        """Whether the journal is shared by several processes (PostgreSQL), not this data dir's own."""
        return self.database_url is not None

    @property
    def ingest_here(self) -> bool:
        """Whether this gateway runs the memory path's background work (ingest, deletions, retention)."""
        return (not self.shared_journal) if self.gateway_ingest is None else self.gateway_ingest

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite3"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"
