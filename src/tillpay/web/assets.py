"""The console's and shop's CSS and JS, served from this package at content-hashed URLs.

Read once at import into memory: ``url("tillpay.css")`` is ``/web/assets/tillpay.<hash>.css``,
so a changed file gets a new URL and browsers may cache each one forever (``immutable``).
Only the files listed in :data:`FILES` are served (an allow-list, not a directory mount).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tillpay.kit.errors import NotFound

PREFIX: Final = "/web/assets"
FILES: Final = {
    "tillpay.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "shop.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str
    url: str


def _load() -> dict[str, Asset]:
    loaded = {}
    for name, media_type in FILES.items():
        body = (files("tillpay.web") / "assets" / name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:12]
        stem, _, ext = name.rpartition(".")
        loaded[name] = Asset(body, media_type, f'"{digest}"', f"{PREFIX}/{stem}.{digest}.{ext}")
    return loaded


ASSETS: Final = _load()
_BY_URL: Final = {a.url: a for a in ASSETS.values()}
URLS: Final = frozenset(_BY_URL)
"""Every asset URL (they touch no table: exempt from the schema guard)."""


def url(name: str) -> str:
    """The versioned URL of asset ``name`` (a KeyError for an unknown one, at render)."""
    return ASSETS[name].url


router = APIRouter(include_in_schema=False)


@router.get(PREFIX + "/{filename}")
async def asset(filename: str, request: Request) -> Response:
    found = _BY_URL.get(f"{PREFIX}/{filename}")
    if found is None:
        raise NotFound()
    headers = {"ETag": found.etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
