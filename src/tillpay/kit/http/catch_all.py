"""The last-resort error handler: an unexpected exception becomes a generic 500 problem.

It sits inside the header/request-id middleware so even a crash carries the security
headers and the request id. The exception is logged (through the redacting logger) and
reported to the error tracker when one is configured; nothing about it reaches the client.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillpay.kit.http._asgi import send_problem
from tillpay.kit.logging import get_logger
from tillpay.kit.telemetry import report_exception

log = get_logger(__name__)


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("http.unhandled_exception", path=scope.get("path"))
            report_exception(exc)
            if started:
                raise
            await send_problem(
                scope,
                send,
                status=500,
                code="internal_error",
                title="Internal server error",
                detail="An unexpected error occurred. Quote the instance when contacting support.",
            )
