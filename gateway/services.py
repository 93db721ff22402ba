"""Everything the routes use, built once from the settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gateway.auth import Authenticator
from gateway.errors import GatewayError
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Journal
from gateway.proxy.chat import ChatProxy
from gateway.proxy.recorder import Recorder
from gateway.proxy.upstream import UpstreamPool
from gateway.settings import Settings


@dataclass
class Services:
    settings: Settings
    auth: Authenticator
    journal: Journal
    blobs: BlobStore
    pool: UpstreamPool
    loader: ImageLoader
    chat: ChatProxy
    _default_model: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
        blobs = BlobStore(settings.images_dir)
        pool = UpstreamPool(
            settings.upstream_urls,
            api_key=settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            health_interval_s=settings.upstream_health_interval_s,
        )
        loader = ImageLoader.from_settings(settings)
        return cls(
            settings=settings,
            auth=Authenticator(settings.tenants_by_key, settings.default_tenant, settings.admin_keys),
            journal=journal,
            blobs=blobs,
            pool=pool,
            loader=loader,
            chat=ChatProxy(pool, loader, Recorder(journal, blobs), settings.max_images_per_request),
            _default_model=settings.default_model,
        )

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.loader.fetcher.close()
        await self.pool.close()
        self.journal.close()

    async def default_model(self) -> str:
        """The configured default model, else the first one the upstream serves (asked once)."""
        if self._default_model is None:
            upstream = await self.pool.open("GET", "/models")
            body = await self.pool.read(upstream)
            try:
                self._default_model = orjson.loads(body)["data"][0]["id"]
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                raise GatewayError(
                    502, "no default model: set VISIONRAG_DEFAULT_MODEL or pass `model`",
                    code="no_default_model",
                ) from None
        return self._default_model
