"""One entry point for every image URL a client sends: `data:` or http(s), verified the same way."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import metrics
from gateway.images.dataurl import decode_data_url, encode_data_url
from gateway.images.errors import ImageError
from gateway.images.fetch import FetchPolicy, ImageFetcher
from gateway.images.verify import ImagePolicy, verify_image

if TYPE_CHECKING:
    from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class LoadedImage:
    data: bytes
    mime: str
    sha256: str
    width: int
    height: int
    # The http(s) URL it came from; None for data: URLs.
    source_url: str | None
    # What the upstream model is sent: always a data: URL, so the model sees these exact bytes.
    data_url: str


class ImageLoader:
    def __init__(self, policy: ImagePolicy, fetcher: ImageFetcher) -> None:
        self.policy = policy
        self.fetcher = fetcher

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLoader:
        """The same limits and guarded fetch for chat images and search-by-image. Close `.fetcher`."""
        policy = ImagePolicy.from_settings(settings)
        fetcher = ImageFetcher(FetchPolicy(
            timeout_s=settings.fetch_timeout_s,
            max_bytes=settings.max_image_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_hosts=frozenset(settings.fetch_allow_hosts),
        ))
        return cls(policy, fetcher)

    @metrics.counting_refusals(ImageError)
    async def load(self, url: str) -> LoadedImage:
        if not isinstance(url, str) or not url:
            raise ImageError("image URL must be a non-empty string", code="invalid_image_url")
        if url[:5].lower() == "data:":
            data = decode_data_url(url, self.policy.max_bytes)
            info = verify_image(data, self.policy)
            # Forward the client's own string when it already names the right type: no re-encoding.
            forwarded = url if url.startswith(f"data:{info.mime};base64,") else encode_data_url(data, info.mime)
            source = None
        elif url[:7].lower() == "http://" or url[:8].lower() == "https://":
            data = await self.fetcher.fetch(url)
            info = verify_image(data, self.policy)
            forwarded = encode_data_url(data, info.mime)
            source = url
        else:
            raise ImageError("image URL must be a data: URL or an http(s) URL", code="invalid_image_url")
        return LoadedImage(
            data=data,
            mime=info.mime,
            sha256=hashlib.sha256(data).hexdigest(),
            width=info.width,
            height=info.height,
            source_url=source,
            data_url=forwarded,
        )
