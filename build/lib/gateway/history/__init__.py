"""History: every recorded exchange and its images, read from the journal and the blob store alone, and
forgotten from everywhere. Works with memory off; memory (gateway.memory) adds search and retrieval
on top, and plugs the vector store's part into forgetting.

Modules, one idea each: `browse` (pages of exchanges and their cursors), `thumbnails` (small copies
of stored images), `forget` (deletions: the journal's part at once, the rest by a finisher thread),
`retention` (old exchanges forgotten in the background), `protocol` (HTTP request/response models)
and `service` (the `History` facade that gateway.api's routes call).
"""
