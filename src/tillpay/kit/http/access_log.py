"""One access-log line and the request metrics per HTTP request."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillpay.kit.http._asgi import client_ip, state
from tillpay.kit.logging import get_logger
from tillpay.kit.metrics import Metrics

log = get_logger("tillpay.access")

UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The route's path template (``/v1/orders/{id}``), never the raw path: bounded label
    cardinality for metrics and no identifiers or tokens copied into logs."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, skip_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_paths = skip_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            template = route_template(scope)
            method = scope["method"]
            self.metrics.observe_request(method, template, status, elapsed)
            if scope["path"] not in self.skip_paths:
                log.info(
                    "http.request",
                    method=method,
                    path=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client_ip=client_ip(scope),
                    user_id=state(scope).get("user_id"),
                )
