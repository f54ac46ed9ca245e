"""The same-run baselines, served exactly like tillpay (uvicorn, one process).

- ``b0``: FastAPI returning a constant: the floor of uvicorn + FastAPI.
- ``b1_pg``: FastAPI doing one primary-key SELECT through an asyncpg pool (size 10, as
  tillpay's default pool): the floor of "a FastAPI app that reads PostgreSQL once".
- ``b1_sqlite``: the same SELECT through aiosqlite (a small pool of connections).

Every path answers (a catch-all route), so the wrk scripts that rotate tillpay paths and
tokens can drive the baselines unchanged. ``BENCH_B1_DSN`` / ``BENCH_B1_SQLITE`` and
``BENCH_B1_ID`` say what to read (a product of the seeded bench database).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

QUERY_PG = "SELECT id, title, currency FROM products WHERE id = $1"
QUERY_SQLITE = "SELECT id, title, currency FROM products WHERE id = ?"


def _app(lifespan: Any = None) -> FastAPI:
    return FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)


b0 = _app()


@b0.get("/{path:path}")
async def constant(path: str) -> dict[str, str]:
    return {"id": "usr_baseline", "email": "baseline@example.com", "role": "CUSTOMER"}


@asynccontextmanager
async def _pg_pool(app: FastAPI) -> AsyncIterator[None]:
    import asyncpg

    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_B1_DSN"], min_size=1, max_size=10)
    try:
        yield
    finally:
        await app.state.pool.close()


b1_pg = _app(_pg_pool)


@b1_pg.get("/{path:path}")
async def pk_select_pg(path: str) -> dict[str, Any]:
    async with b1_pg.state.pool.acquire() as connection:
        row = await connection.fetchrow(QUERY_PG, os.environ["BENCH_B1_ID"])
    return dict(row) if row is not None else {}


@asynccontextmanager
async def _sqlite_pool(app: FastAPI) -> AsyncIterator[None]:
    import aiosqlite

    pool: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
    for _ in range(5):
        await pool.put(await aiosqlite.connect(os.environ["BENCH_B1_SQLITE"]))
    app.state.pool = pool
    try:
        yield
    finally:
        while not pool.empty():
            await (pool.get_nowait()).close()


b1_sqlite = _app(_sqlite_pool)


@b1_sqlite.get("/{path:path}")
async def pk_select_sqlite(path: str) -> dict[str, Any]:
    pool = b1_sqlite.state.pool
    connection = await pool.get()
    try:
        async with connection.execute(QUERY_SQLITE, (os.environ["BENCH_B1_ID"],)) as cursor:
            row = await cursor.fetchone()
    finally:
        pool.put_nowait(connection)
    return {"id": row[0], "title": row[1], "currency": row[2]} if row else {}
