"""Walking the audit chain: the first broken link, if any.

Rows are read in ``seq`` order, a batch at a time (memory stays bounded however long the
trail). What each check means:

* ``modified``: a row's columns no longer give its ``hash`` (a column, or the hash, was
  changed), or the head names a different hash for that row;
* ``deleted``: a ``seq`` is missing, or the chain ends before the head says it does;
* ``inserted``: a row does not follow the one before it (``prev_hash`` is not that row's
  hash), lies beyond the head, or comes before seq 1.

A chain rewritten from some row onwards with fresh hashes, head included, verifies: the
chain shows changes to what it covers; keeping the printed head elsewhere (a ticket, a
log) anchors it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.audit.chain import GENESIS_HASH, HASHED_FIELDS, entry_hash
from tillpay.audit.models import AuditChainHead, AuditEvent

Kind = Literal["modified", "deleted", "inserted"]
_table = AuditEvent.__table__
_COLUMNS = [_table.c[name] for name in (*HASHED_FIELDS, "hash")]


@dataclass(frozen=True)
class Break:
    """The first broken link: which row (``seq``, ``id``; None past the end) and why."""

    kind: Kind
    seq: int | None
    id: str | None
    reason: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_seq: int
    head_hash: str
    broken: Break | None

    @property
    def intact(self) -> bool:
        return self.broken is None


async def _head(conn: AsyncConnection) -> tuple[int, str] | None:
    query = select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else (row.seq, row.hash)


async def verify_chain(conn: AsyncConnection, *, batch: int = 1000) -> ChainReport:
    """Check every link from seq 1 to the head (rows appended meanwhile are checked too)."""
    head = await _head(conn) or (0, GENESIS_HASH)
    checked, expected_seq, prev = 0, 1, GENESIS_HASH
    after: int | None = None
    while True:
        query = select(*_COLUMNS).order_by(_table.c.seq).limit(batch)
        if after is not None:
            query = query.where(_table.c.seq > after)
        rows = (await conn.execute(query)).all()
        for row in rows:
            if row.seq > head[0]:
                # Appended since the head was read, or never appended through the head.
                head = await _head(conn) or head
            broken = _check(row, expected_seq, prev, head)
            if broken is not None:
                return ChainReport(checked, *head, broken)
            checked, expected_seq, prev = checked + 1, row.seq + 1, row.hash
        if len(rows) < batch:
            break
        after = rows[-1].seq
    if expected_seq - 1 < head[0]:
        gap = f"seq {expected_seq}" + (f" to {head[0]}" if head[0] > expected_seq else "")
        reason = f"the chain ends at seq {expected_seq - 1} but its head is at seq {head[0]}"
        return ChainReport(checked, *head, Break("deleted", None, None, f"{reason}: {gap} gone"))
    return ChainReport(checked, *head, None)


def _check(row: Row[Any], seq: int, prev: str, head: tuple[int, str]) -> Break | None:
    """What is wrong with ``row``, expected at ``seq`` after a row hashed ``prev``."""
    if row.seq < seq:
        return Break("inserted", row.seq, row.id, "before seq 1, where the chain starts")
    if row.seq > head[0]:
        return Break("inserted", row.seq, row.id, f"beyond the chain head (seq {head[0]})")
    if entry_hash(row._asdict()) != row.hash:
        return Break("modified", row.seq, row.id, "its columns do not match its hash")
    if row.seq > seq:
        missing = f"seq {seq}" + (f" to {row.seq - 1}" if row.seq - 1 > seq else "")
        return Break("deleted", row.seq, row.id, f"{missing} missing before it")
    if row.prev_hash != prev:
        reason = (
            f"it does not follow seq {seq - 1} (its prev_hash is not that row's hash): one of"
            " the two was put there (replaced, or re-hashed after a change)"
        )
        return Break("inserted", row.seq, row.id, reason)
    if row.seq == head[0] and row.hash != head[1]:
        return Break("modified", row.seq, row.id, "its hash differs from the chain head's")
    return None
