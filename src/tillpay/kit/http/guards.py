"""Request guards: method allow-list (405), Host allow-list (400), body size (413) and
JSON content type (415). Each answers with problem+json before the app does any work."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillpay.kit.http._asgi import header, send_problem

ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class MethodGuardMiddleware:
    """TRACE, CONNECT and any unknown verb get 405 on every path (ASVS 13.4.4, 4.1.4)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ALLOWED_METHODS:
            await send_problem(
                scope,
                send,
                status=405,
                code="method_not_allowed",
                title="Method Not Allowed",
                detail="This HTTP method is not supported.",
                headers={"Allow": ", ".join(sorted(ALLOWED_METHODS - {"OPTIONS"}))},
            )
            return
        await self.app(scope, receive, send)


class NulByteGuardMiddleware:
    """A NUL byte in the path or query string is never legitimate (PostgreSQL text cannot
    hold one): 400 before any handler sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"%00" in scope.get("query_string", b"").lower()
            or b"\x00" in scope.get("query_string", b"")
            or b"%00" in scope.get("raw_path", b"").lower()
        ):
            await send_problem(
                scope,
                send,
                status=400,
                code="invalid_characters",
                title="Bad Request",
                detail="The request contains a NUL character.",
            )
            return
        await self.app(scope, receive, send)


class TrustedHostMiddleware:
    """Rejects requests whose Host is not allow-listed (host-header injection)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        hosts = [h.lower() for h in allowed_hosts]
        self.allow_any = "*" in hosts
        self.exact = {h for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def _allowed(self, scope: Scope) -> bool:
        if self.allow_any:
            return True
        raw = header(scope, b"host")
        if raw is None:
            return False
        host = raw.decode("latin-1").lower()
        if host.startswith("["):  # IPv6 literal, e.g. [::1]:8000
            host = host.split("]", 1)[0] + "]"
        else:
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_problem(
                scope,
                send,
                status=400,
                code="invalid_host",
                title="Bad Request",
                detail="The Host header is not allowed.",
            )
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    It is an HTTPException so FastAPI's body parsing re-raises it untouched and the
    problem handler renders a 413.
    """

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is too large.")


class BodyLimitMiddleware:
    """Caps request bodies: by Content-Length up front, and while streaming otherwise."""

    def __init__(
        self, app: ASGIApp, *, default_limit: int, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        # Longest prefix wins, so a group can be narrowed further down the tree.
        self.limits = sorted((limits or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = header(scope, b"content-length")
        if declared is not None:
            try:
                declared_length = int(declared)
            except ValueError:
                declared_length = -1
            if declared_length < 0:
                await send_problem(
                    scope,
                    send,
                    status=400,
                    code="bad_request",
                    title="Bad Request",
                    detail="Invalid Content-Length header.",
                )
                return
            if declared_length > limit:
                await _too_large(scope, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


async def _too_large(scope: Scope, send: Send) -> None:
    await send_problem(
        scope,
        send,
        status=413,
        code="payload_too_large",
        title="Request body too large",
        detail="The request body is too large.",
    )


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return header(scope, b"transfer-encoding") is not None


def is_json_media_type(value: bytes | None) -> bool:
    """``application/json`` or ``application/*+json``, parameters allowed."""
    if value is None:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class JsonContentTypeMiddleware:
    """Requests with a body must declare JSON, except under explicitly exempt prefixes
    (HTML form posts of the sandbox page, for example)."""

    def __init__(self, app: ASGIApp, *, exempt_prefixes: Iterable[str] = ()) -> None:
        self.app = app
        self.exempt = tuple(exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and not scope["path"].startswith(self.exempt)
            and _has_body(scope)
            and not is_json_media_type(header(scope, b"content-type"))
        ):
            await send_problem(
                scope,
                send,
                status=415,
                code="unsupported_media_type",
                title="Unsupported Media Type",
                detail="Send the request body as application/json.",
            )
            return
        await self.app(scope, receive, send)
