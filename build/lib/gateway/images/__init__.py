"""Images on the request path: decode `data:` URLs, fetch http(s) URLs safely, verify with Pillow,
decode small for models."""

from gateway.images.budget import DecodeBudget
from gateway.images.decode import ImageDecoder, default_decoder
from gateway.images.errors import ImageError
from gateway.images.fetch import FetchPolicy, ImageFetcher
from gateway.images.loader import ImageLoader, LoadedImage
from gateway.images.verify import ImagePolicy

__all__ = [
    "DecodeBudget", "FetchPolicy", "ImageDecoder", "ImageError", "ImageFetcher", "ImageLoader", "ImagePolicy",
    "LoadedImage", "default_decoder",
]
