"""Answer 503 instead of running API requests against a database schema that is not
at the latest migration (see :mod:`tillpay.ops.schema`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tillpay.kit.http._asgi import send_problem


class SchemaGuardMiddleware:
    """Gate every request but the exempt ones on ``app.state.schema``."""

    def __init__(self, app: ASGIApp, *, exempt_paths: frozenset[str]) -> None:
        self.app = app
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        schema = getattr(scope["app"].state, "schema", None)
        if schema is not None and await schema.check() == "outdated":
            await send_problem(
                scope,
                send,
                status=503,
                code="schema_outdated",
                title="Service unavailable",
                detail=(
                    "The database schema is not at the latest migration; "
                    "the operator must run `tillpay migrate`."
                ),
                headers={"Retry-After": "5"},
            )
            return
        await self.app(scope, receive, send)
