"""Idempotency keys with Stripe's semantics, shared by every money-moving POST.

- Same key + same request → the original response (status and body), marked with
  ``Idempotent-Replayed: true``.
- Same key + a different request → 422 ``idempotency_error``.
- A concurrent request with the same key waits for the first (the unique index makes it
  wait on PostgreSQL; SQLite serialises writers) and then gets the original response. If
  the first is still running after ``wait_timeout`` it gets 409 ``idempotency_in_progress``.
- Keys are scoped (per user) and kept ``TTL`` (72 h, Stripe keeps at least 24 h); the worker
  purges older ones.

The record is written in the request's own transaction, together with the work it
guards: a request that fails leaves no record, and a retry runs it again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from tillpay.kit.db import utcnow
from tillpay.kit.errors import AppError, BadRequest, Conflict
from tillpay.kit.idempotency_models import IdempotencyRecord
from tillpay.kit.ids import new_id

TTL = timedelta(hours=72)
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyError(AppError):
    status, code, title = 422, "idempotency_error", "Idempotency key reused"


class IdempotencyInProgress(Conflict):
    code, title = "idempotency_in_progress", "Request with this key is in progress"


def idempotency_key_header(
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            description="A unique key per logical request (e.g. a UUID); retries reuse it.",
            examples=["3f1c2b9e-7d8a-4f7b-9a65-2c3d4e5f6a7b"],
        ),
    ],
) -> str:
    """The validated ``Idempotency-Key`` header (printable ASCII, at most 255 characters)."""
    if not _KEY_PATTERN.match(idempotency_key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    return idempotency_key


def fingerprint(operation: str, payload: Any) -> str:
    """A stable hash of what the request asks for (canonical JSON, sorted keys)."""
    canonical = orjson.dumps({"op": operation, "body": payload}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@dataclass
class Claim:
    """A key this request now owns (``replay`` is None), or the stored answer to replay."""

    record: IdempotencyRecord
    replay: Response | None = None

    @property
    def stored_status(self) -> int:
        return self.record.response_status or 200

    @property
    def stored_body(self) -> Any:
        return self.record.response_body


def _insert(session: AsyncSession, values: Mapping[str, Any]) -> Any:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(IdempotencyRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyRecord.id)
    )


def _replay(record: IdempotencyRecord) -> Response:
    body = orjson.dumps(record.response_body) if record.response_body is not None else b""
    response = Response(
        content=body,
        status_code=record.response_status or 200,
        media_type="application/json" if body else None,
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def claim(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    operation: str,
    payload: Any,
    stale_after: timedelta | None = None,
) -> Claim:
    """Take ``key`` for this request, or find the response it already produced.

    Routes that commit the claim before calling a provider (two transactions) pass
    ``stale_after``: a claim still unfinished after that long (its process died) is taken
    over, which is safe because those operations are themselves idempotent."""
    print_ = fingerprint(operation, payload)
    now = utcnow()
    inserted = await session.execute(
        _insert(
            session,
            {
                "id": new_id("idk"),
                "scope": scope,
                "key": key,
                "operation": operation,
                "fingerprint": print_,
                "created_at": now,
                "expires_at": now + TTL,
            },
        )
    )
    inserted_id = inserted.scalar_one_or_none()
    if inserted_id is not None:
        record = await session.get(IdempotencyRecord, inserted_id)
        assert record is not None
        return Claim(record)
    existing = (
        await session.execute(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if existing.operation != operation or existing.fingerprint != print_:
        raise IdempotencyError(
            "This Idempotency-Key was used with a different request.",
        )
    if existing.response_status is None:
        if stale_after is not None and utcnow() - existing.created_at > stale_after:
            existing.created_at = utcnow()
            return Claim(existing)
        raise IdempotencyInProgress("A request with this Idempotency-Key is still running.")
    return Claim(existing, replay=_replay(existing))


def complete(claim_: Claim, *, status: int, body: Any) -> None:
    """Store the response to replay (in the same transaction as the work itself)."""
    claim_.record.response_status = status
    claim_.record.response_body = body


async def complete_by_id(session: AsyncSession, record_id: str, *, status: int, body: Any) -> None:
    """Store the response of a claim taken in an earlier transaction."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None:
        record.response_status = status
        record.response_body = body


async def purge_expired(session: AsyncSession) -> int:
    """Delete keys past their retention; returns how many went."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
