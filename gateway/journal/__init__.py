"""The exchange journal: a durable record of every exchange, and the queue the memory path consumes."""

from gateway.journal.blobs import BlobStore
from gateway.journal.records import Exchange, ImageRef
from gateway.journal.store import Journal, Unfinished

__all__ = ["BlobStore", "Exchange", "ImageRef", "Journal", "Unfinished"]
