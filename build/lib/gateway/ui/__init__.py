"""The web page for the memory (`GET /ui`): search, browse, an exchange's page, chat with sources.

Plain JavaScript modules and one stylesheet under `static/`, served by the gateway itself (no build
step, no CDN); the page calls the same public API as any client.
"""
