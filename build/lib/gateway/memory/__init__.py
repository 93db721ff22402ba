"""Memory: every recorded exchange embedded with CLIP, stored in Qdrant, and searchable.

Modules, one idea each: `embed` (fastembed CLIP), `points` (exchange -> points), `store` (the vector
store: its schema, its points and hits, its protocol and two adapters), `texts` (hits' texts from the
journal), `ingest` (the background worker), `search` (queries), `forget_points` (the store's part of
forgetting, which gateway.history runs), `protocol` (HTTP request/response models) and `service` (the
`Memory` facade that gateway.api's routes call).

Nothing is imported here: a light importer (the CLI's options read `store.schema`) does not load the
whole memory path and its models' libraries.
"""

