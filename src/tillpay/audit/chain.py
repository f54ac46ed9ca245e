"""The audit hash chain: what an entry's hash covers, and how entries join the chain.

Each entry's ``hash`` is SHA-256 (lower-case hex) over its canonical encoding, which
includes ``seq`` and ``prev_hash`` (the previous entry's ``hash``; 64 zeros for seq 1).
The canonical encoding is a JSON object of the entry's columns
(:data:`HASHED_FIELDS`, always all of them, nulls written as ``null``) with keys sorted,
no whitespace (``,`` and ``:`` separators), ASCII only (anything else as ``\\uXXXX``
escapes, lower-case hex), ``occurred_at`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always
six digits), ``seq`` a JSON integer, ``details`` nested the same way (floats as Python's
shortest round-trip ``repr``); NaN and infinities are refused. ``v`` is the encoding's
version (1). tests/audit/test_chain_encoding.py holds a known answer.

Both a sequence number and a head: ``seq`` (1, 2, 3 …) makes a deleted row a visible gap
and orders the walk; the head row names where the chain ends, so rows deleted from the
end are missed too (on PostgreSQL a trigger keeps the head from moving back).

Appends are serialised by the chain head row (``audit_chain_head``), locked ``FOR
UPDATE`` in the flush that inserts the rows. ``record`` holds its events back until
the transaction commits (:func:`defer`), so that flush, and the lock, come last: the
head is held only from the commit's flush to the commit. SQLite serialises writers
already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from tillpay.audit.models import AuditChainHead, AuditEvent
from tillpay.kit.db import utcnow
from tillpay.kit.ids import new_id

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""

ENCODING_VERSION = 1
HASHED_FIELDS = (
    "id",
    "seq",
    "prev_hash",
    "occurred_at",
    "action",
    "outcome",
    "actor_id",
    "actor_role",
    "target_type",
    "target_id",
    "ip",
    "request_id",
    "details",
)
_HEAD_ID = 1
_PENDING = "audit.pending"


def format_time(value: datetime) -> str:
    """UTC, microseconds always written: ``2026-12-03T09:05:01.000000Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in an audit entry")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The canonical encoding of an entry given as ``{column: value}``."""
    document: dict[str, Any] = {name: fields[name] for name in HASHED_FIELDS}
    document["occurred_at"] = format_time(fields["occurred_at"])
    document["v"] = ENCODING_VERSION
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def entry_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def fields_of(entry: AuditEvent) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


# ------------------------------------------------------------------ appending to the chain


def defer(session: Session, entry: AuditEvent) -> None:
    """Hold ``entry`` back until the transaction commits (dropped if the savepoint or
    transaction it was recorded in rolls back)."""
    session.info.setdefault(_PENDING, []).append((session.get_nested_transaction(), entry))


@event.listens_for(Session, "before_commit")
def _add_deferred(session: Session) -> None:
    # Also called when a savepoint is released: the events wait for the real commit.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING, None)
    if pending:
        # The transaction's other writes first: then the head's lock is the last one it
        # takes, and no writer holding the head waits on a row lock another writer holds
        # while that one waits for the head (a deadlock).
        session.flush()
        session.add_all(entry for _, entry in pending)


@event.listens_for(Session, "after_soft_rollback")
def _drop_deferred(session: Session, previous: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if previous.nested:  # a savepoint: only what was recorded inside it goes
        session.info[_PENDING] = [(t, e) for t, e in pending if not _within(t, previous)]
    elif previous.parent is None:  # the transaction itself
        session.info.pop(_PENDING, None)
    # Otherwise the inner transaction of a failed flush: its own rollback undoes nothing
    # yet. Inside a savepoint the savepoint's rollback follows (the case above); at the
    # top level the transaction can only roll back next (the case before). Dropping here
    # lost the events of a transaction that caught a duplicate insert in a savepoint.


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "before_flush")
def _chain_new_entries(session: Session, _context: Any, _instances: Any) -> None:
    entries = [o for o in session.new if isinstance(o, AuditEvent) and o.seq is None]
    if not entries:
        return
    for entry in entries:
        # Column defaults apply only at the insert, after the hash: settle them now.
        entry.id = entry.id or new_id("aud")
        entry.occurred_at = entry.occurred_at or utcnow()
        entry.outcome = entry.outcome or "success"
        entry.details = dict(entry.details or {})
    entries.sort(key=lambda e: (e.occurred_at, e.id))
    append(session, entries)


def append(session: Session, entries: list[AuditEvent]) -> None:
    """Give ``entries`` (complete but for the chain columns) the next sequence numbers
    and hashes, under the head's lock."""
    conn = session.connection()
    head = _locked_head(session)
    if head is None:
        # A database emptied by hand (tests) has no head yet; racing first appends
        # wait on the inserted row, then lock it.
        conn.execute(_insert_ignore(session).values(id=_HEAD_ID, seq=0, hash=GENESIS_HASH))
        head = _locked_head(session)
        assert head is not None
    seq, prev = head
    for entry in entries:
        seq += 1
        entry.seq = seq
        entry.prev_hash = prev
        entry.hash = prev = entry_hash(fields_of(entry))
    conn.execute(
        update(AuditChainHead).where(AuditChainHead.id == _HEAD_ID).values(seq=seq, hash=prev)
    )


def _locked_head(session: Session) -> tuple[int, str] | None:
    query = (
        select(AuditChainHead.seq, AuditChainHead.hash)
        .where(AuditChainHead.id == _HEAD_ID)
        .with_for_update()
    )
    row = session.connection().execute(query).one_or_none()
    return None if row is None else (row.seq, row.hash)


def _insert_ignore(session: Session) -> Any:
    dialect = session.connection().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(AuditChainHead).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(AuditChainHead).on_conflict_do_nothing()
    return insert(AuditChainHead)
