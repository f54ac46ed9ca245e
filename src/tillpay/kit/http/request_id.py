"""Request ids: accepted from a trusted proxy, otherwise generated; echoed and logged."""

from __future__ import annotations

import ipaddress
import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillpay.kit.http._asgi import header, state

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")


class TrustedProxies:
    """A set of proxy addresses/networks whose forwarding headers we believe.

    ``["*"]`` trusts every peer, as uvicorn's ``ProxyHeadersMiddleware`` does for the
    same value (the settings refuse it in production).
    """

    def __init__(self, entries: list[str]) -> None:
        self.trust_all = entries == ["*"]
        self.networks = (
            [] if self.trust_all else [ipaddress.ip_network(e, strict=False) for e in entries]
        )

    def __contains__(self, host: object) -> bool:
        if self.trust_all:
            return True
        if not isinstance(host, str) or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class RequestIdMiddleware:
    """Sets ``scope['state']['request_id']``, binds it to every log line, echoes it."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: list[str], header_name: str) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)
        self.header = header_name.lower().encode("latin-1")

    def _choose(self, scope: Scope) -> str:
        client = scope.get("client")
        if client and client[0] in self.trusted:
            raw = header(scope, self.header)
            if raw is not None:
                candidate = raw.decode("latin-1")
                if _VALID_ID.match(candidate):
                    return candidate
        return uuid.uuid4().hex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = self._choose(scope)
        # A private copy per request: per-request values must never be shared through a
        # server-provided state dict.
        scope["state"] = dict(scope.get("state") or {})
        state(scope)["request_id"] = rid
        encoded = rid.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != self.header]
                headers.append((self.header, encoded))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            await self.app(scope, receive, send_with_id)
