"""CORS from an explicit allow-list. Starlette's middleware never reflects an origin it
was not given; this subclass only makes its refusals problem+json like every other error."""

from __future__ import annotations

import structlog
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from tillpay.kit.errors import problem_response

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Idempotent-Replayed",
]


class ProblemCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, origins: list[str], allow_credentials: bool) -> None:
        if "*" in origins and allow_credentials:
            raise ValueError("wildcard CORS origin cannot be combined with credentials")
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=allow_credentials,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        # The preflight hook gets no scope; the request id lives in the log context.
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        problem = problem_response(
            request_id,
            status=400,
            code="cors_rejected",
            title="CORS preflight rejected",
            detail="This origin, method or header is not allowed.",
        )
        problem.headers["Vary"] = "Origin"
        return problem
