"""``/healthz`` (liveness), ``/readyz`` (dependencies) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from tillpay.kit.errors import NotFound, Unauthorized
from tillpay.ops.readiness import Check, check_broker, run_checks

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class CheckStatus(BaseModel):
    status: str
    duration_ms: float


class Readiness(BaseModel):
    status: str
    checks: dict[str, CheckStatus]


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process is up and serving requests. Checks no dependency."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency is unavailable"}},
)
async def readyz(request: Request) -> Response:
    """Database and its schema revision, and Redis and the broker when configured; 503
    when any check fails (``schema``: the database is not at the latest migration)."""
    state = request.app.state
    checks: dict[str, Check] = {
        "database": state.database.ping,
        "schema": state.schema.require_current,
    }
    if state.redis is not None:
        checks["redis"] = state.redis.ping
    if state.settings.broker_url is not None:
        url = state.settings.broker_url.get_secret_value()
        checks["broker"] = lambda: check_broker(url)
    results = await run_checks(checks)
    healthy = all(r.ok for r in results)
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable",
        "checks": {
            r.name: {"status": "ok" if r.ok else "unavailable", "duration_ms": r.duration_ms}
            for r in results
        },
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition; bearer-token protected when a token is configured."""
    settings = request.app.state.settings
    if not settings.metrics_enabled:
        raise NotFound()
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("A valid metrics token is required.")
    registry = request.app.state.metrics
    pool = request.app.state.database.engine.pool
    for gauge, attr in (
        (registry.db_pool_size, "size"),
        (registry.db_pool_checked_out, "checkedout"),
        (registry.db_pool_overflow, "overflow"),
    ):
        method = getattr(pool, attr, None)
        if callable(method):
            gauge.set(method())
    return Response(registry.render(), media_type=registry.content_type)
