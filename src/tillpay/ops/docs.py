"""``/docs``: Swagger UI served from this process, no CDN.

The Swagger UI bundle and stylesheet come from the ``fastapi-offline`` package (its
``static/`` directory, kept current with swagger-ui-dist); the start-up script is ours and
external, so the page's CSP allows scripts from this origin only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from tillpay.kit.errors import NotFound

ASSETS_PREFIX: Final = "/docs/assets"

DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_VENDOR = Path(str(files("fastapi_offline") / "static"))
_OWN = Path(str(files("tillpay.ops") / "docs_assets"))
# An allow-list, not a directory mount: nothing else of either package is served.
ASSETS: Final[dict[str, tuple[Path, str]]] = {
    "swagger-ui-bundle.js": (_VENDOR / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (_VENDOR / "swagger-ui.css", "text/css"),
    "favicon.png": (_VENDOR / "favicon.png", "image/png"),
    "init.js": (_OWN / "init.js", "text/javascript"),
}

PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tillpay API</title>
<link rel="icon" type="image/png" href="{ASSETS_PREFIX}/favicon.png">
<link rel="stylesheet" href="{ASSETS_PREFIX}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PREFIX}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PREFIX}/init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


def _with_docs_headers(response: HTMLResponse | FileResponse) -> None:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cross-Origin-Embedder-Policy"] = "unsafe-none"


@router.get("/docs")
async def docs() -> HTMLResponse:
    response = HTMLResponse(PAGE)
    _with_docs_headers(response)
    return response


@router.get(ASSETS_PREFIX + "/{name}")
async def docs_asset(name: str) -> FileResponse:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound()
    path, media_type = asset
    response = FileResponse(path, media_type=media_type)
    response.headers["Cache-Control"] = "public, max-age=86400"
    _with_docs_headers(response)
    return response
