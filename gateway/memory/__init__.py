"""Memory: every recorded exchange embedded with CLIP, stored in Qdrant, and searchable.

Modules, one idea each: `embed` (fastembed CLIP), `points` (exchange -> points), `store` (the vector
store protocol and its two adapters), `ingest` (the background worker), `search` (queries),
`protocol` (HTTP request/response models), `routes` (the HTTP API) and `service` (the `Memory` facade
the app wires in).
"""

from gateway.memory.service import Memory

__all__ = ["Memory"]
