"""The same-run baseline: a bare FastAPI app with no perimeter, auth or database, so the
benchmark shows what tillpay's security layers and unit of work cost on top of FastAPI."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/me")
async def me() -> dict[str, str]:
    return {"id": "usr_baseline", "email": "baseline@example.com", "role": "CUSTOMER"}
