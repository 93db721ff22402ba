"""`/docs`: Swagger UI served from the gateway's own files, so it works with no internet.

FastAPI's default page loads Swagger UI from a CDN, which an air-gapped deployment cannot reach.
The assets are vendored in gateway/static/swagger-ui (version and origin in its README.txt).
ReDoc is not offered: it would need its own bundle and web fonts from the internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parents[2] / "static" / "swagger-ui"
ASSETS_PATH = "/static/swagger-ui"


def install_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="swagger-ui")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL the page loads must carry it.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            # validatorUrl null: Swagger UI would otherwise send the document to swagger.io to check it.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )
