"""HTTP side of rate limiting: the global per-IP middleware and named per-route policies.

The client IP is the one left after trusted-proxy resolution, so a client cannot reset
its counter by sending ``X-Forwarded-For``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillpay.kit.errors import RateLimited
from tillpay.kit.http._asgi import client_ip, send_problem
from tillpay.kit.ratelimit import RateLimiter, headers

GLOBAL_POLICY = "global"


class GlobalRateLimitMiddleware:
    """Applies the ``global`` policy per client IP and adds ``RateLimit-*`` headers."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, exempt_paths: frozenset[str]) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.hit(GLOBAL_POLICY, client_ip(scope))
        limit_headers = headers(decision)
        if not decision.allowed:
            await send_problem(
                scope,
                send,
                status=429,
                code="rate_limited",
                title="Too many requests",
                detail="Rate limit exceeded; retry later.",
                headers=limit_headers,
            )
            return
        encoded = [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *encoded]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimit:
    """A route dependency enforcing a named policy (``Depends(RateLimit("auth"))``).

    The key is the client IP; services add per-account keys themselves (login lockout).
    """

    def __init__(self, policy: str) -> None:
        self.policy = policy

    async def __call__(self, request: Request) -> None:
        limiter: RateLimiter | None = getattr(request.app.state, "ratelimiter", None)
        if limiter is None:
            return
        decision = await limiter.hit(self.policy, client_ip(request.scope))
        if not decision.allowed:
            raise RateLimited("Rate limit exceeded; retry later.", headers=headers(decision))
