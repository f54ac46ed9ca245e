"""Helpers shared by the raw ASGI middleware."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import Scope, Send

from tillpay.kit.errors import PROBLEM_CONTENT_TYPE, encode_problem, problem_body


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower-case bytes), if present."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict that ``request.state`` reads."""
    st: dict[str, Any] = scope.setdefault("state", {})
    return st


def request_id(scope: Scope) -> str | None:
    value = state(scope).get("request_id")
    return value if isinstance(value, str) else None


def client_ip(scope: Scope) -> str:
    """The client address after trusted-proxy resolution."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def send_problem(
    scope: Scope,
    send: Send,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> None:
    """Send a complete problem+json response from raw ASGI code."""
    rid = request_id(scope)
    body = encode_problem(problem_body(rid, status=status, code=code, title=title, detail=detail))
    items = headers.items() if isinstance(headers, Mapping) else headers
    raw_headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items],
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
