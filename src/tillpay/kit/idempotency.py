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

Routes that call a provider commit the claim first (two transactions). Such a claim also
remembers the resource its request created (:func:`remember`, in the same transaction as
that row). If the process dies during the provider call, a retry after ``stale_after``
takes the claim over and must *resume* that resource (``Claim.resumed``), never create a
second one.

Every money route uses it the same way: it names its request (:class:`IdempotentRequest`),
gets an :class:`Answer` (from :func:`once` around one transaction's work, or from a service
that claims with :func:`begin` and finishes with :func:`finish` / :func:`finish_by_id`
across transactions) and returns ``answer.response()``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse, Response

from tillpay.kit.db import utcnow
from tillpay.kit.errors import AppError, BadRequest, Conflict
from tillpay.kit.idempotency_models import IdempotencyRecord
from tillpay.kit.ids import new_id

TTL = timedelta(hours=72)
STALE_CLAIM = timedelta(minutes=5)
"""How long a claim committed before a provider call may stay unfinished before a retry
takes it over (``stale_after`` of the two-transaction routes)."""
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyError(AppError):
    status, code, title = 422, "idempotency_error", "Idempotency key reused"


class IdempotencyInProgress(Conflict):
    code, title = "idempotency_in_progress", "Request with this key is in progress"


async def idempotency_key_header(
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
    resumed: bool = False  # a stale claim taken over: resume ``resource_id``, start nothing

    @property
    def resource_id(self) -> str | None:
        return self.record.resource_id

    @property
    def stored_status(self) -> int:
        return self.record.response_status or 200

    @property
    def stored_body(self) -> Any:
        return self.record.response_body

    @property
    def answer(self) -> Answer | None:
        """The stored answer to replay; None when this request owns the key."""
        if self.replay is None:
            return None
        return Answer(self.stored_status, self.stored_body, replayed=True)


@dataclass(frozen=True)
class IdempotentRequest:
    """What one money request is, for its key: who asks, the key, and what is asked."""

    scope: str
    key: str
    operation: str
    payload: Any


@dataclass(frozen=True)
class Answer:
    """A money route's status and JSON body: stored with the key, replayed on a retry."""

    status_code: int
    body: Any
    replayed: bool = False

    def response(self) -> JSONResponse:
        response = JSONResponse(self.body, status_code=self.status_code)
        if self.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response


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


async def _take_over(
    session: AsyncSession, record: IdempotencyRecord, stale_after: timedelta
) -> bool:
    """Renew a stale claim's lease; one atomic UPDATE, so of two retries racing for the
    same stale claim exactly one wins (the other waits on the row, then sees it fresh)."""
    now = utcnow()
    taken = await session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record.id,
            IdempotencyRecord.response_status.is_(None),
            IdempotencyRecord.created_at < now - stale_after,
        )
        .values(created_at=now)
        .returning(IdempotencyRecord.id)
        .execution_options(synchronize_session=False)
    )
    if taken.scalar_one_or_none() is None:
        return False
    await session.refresh(record)
    return True


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
    over (``resumed``) and its lease renewed, so other retries keep getting 409. The caller
    resumes the resource the claim remembers; a stale claim that remembers none is refused
    as still in progress (it may have started work nobody can find again)."""
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
        if (
            stale_after is not None
            and existing.resource_id is not None
            and await _take_over(session, existing, stale_after)
        ):
            return Claim(existing, resumed=True)
        raise IdempotencyInProgress("A request with this Idempotency-Key is still running.")
    return Claim(existing, replay=_replay(existing))


def remember(claim_: Claim, resource_type: str, resource_id: str) -> None:
    """Record what this request created (in the same transaction as that row)."""
    claim_.record.resource_type = resource_type
    claim_.record.resource_id = resource_id


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


async def begin(
    session: AsyncSession, request: IdempotentRequest, *, stale_after: timedelta | None = None
) -> Claim:
    """:func:`claim` the key of ``request`` (``claim.answer`` is set for a replay)."""
    return await claim(
        session,
        scope=request.scope,
        key=request.key,
        operation=request.operation,
        payload=request.payload,
        stale_after=stale_after,
    )


def finish(claim_: Claim, answer: Answer) -> Answer:
    """Store ``answer`` for the key (in the same transaction as the work itself)."""
    complete(claim_, status=answer.status_code, body=answer.body)
    return answer


async def finish_by_id(session: AsyncSession, record_id: str, answer: Answer) -> Answer:
    """Store ``answer`` for a key claimed in an earlier transaction."""
    await complete_by_id(session, record_id, status=answer.status_code, body=answer.body)
    return answer


async def once(
    session: AsyncSession, request: IdempotentRequest, work: Callable[[], Awaitable[Answer]]
) -> Answer:
    """Run ``work`` once per key in the session's transaction: a retry gets its answer."""
    claim_ = await begin(session, request)
    if claim_.answer is not None:
        return claim_.answer
    return finish(claim_, await work())


async def purge_expired(session: AsyncSession) -> int:
    """Delete keys past their retention; returns how many went."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
