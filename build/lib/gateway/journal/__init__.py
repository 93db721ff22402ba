"""The exchange journal: a durable record of every exchange, and the queue the memory path consumes.

Callers hold the Protocols (`Journal`, `BlobStore`) and get an instance from `open_journal` /
`open_blobs`; the backends (gateway.journal.sqlite, gateway.journal.disk, gateway.journal.s3) are named
only there and in tests of their own specifics.
"""

from gateway.journal.base import BlobStore, BlobStream, BlobUnavailable, Journal, Unfinished
from gateway.journal.factory import open_blobs, open_journal
from gateway.journal.records import Exchange, ImageRef

__all__ = ["BlobStore", "BlobStream", "BlobUnavailable", "Exchange", "ImageRef", "Journal", "Unfinished",
           "open_blobs", "open_journal"]
