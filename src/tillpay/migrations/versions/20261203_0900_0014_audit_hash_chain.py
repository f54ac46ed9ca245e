"""audit hash chain

Every audit row gets ``seq``, ``prev_hash`` and ``hash`` (audit/chain.py); the chain head
lives in ``audit_chain_head``. Rows already there are chained here, oldest first
(``occurred_at``, then ``id``). On PostgreSQL, triggers refuse UPDATE, DELETE and
TRUNCATE on ``audit_events`` and any change to the head but moving it forward.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-03 09:00:00
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import tillpay.kit.db

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
FIELDS = (
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
# A frozen copy of audit/chain.py's encoding version 1 (a migration must not change when
# the code does); tests/audit/test_chain_migration.py checks the two agree.
_audit = sa.table(
    "audit_events",
    sa.column("id", sa.String()),
    sa.column("occurred_at", tillpay.kit.db.UTCDateTime(timezone=True)),
    sa.column("action", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("actor_id", sa.String()),
    sa.column("actor_role", sa.String()),
    sa.column("target_type", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_head = sa.table(
    "audit_chain_head",
    sa.column("id", sa.Integer()),
    sa.column("seq", sa.BigInteger()),
    sa.column("hash", sa.String()),
)

PG_TRIGGERS = (
    """
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()""",
    """CREATE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_chain_head only moves forward: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only()""",
    """CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()""",
)

PG_DROP_TRIGGERS = (
    "DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head",
    "DROP TRIGGER IF EXISTS audit_chain_head_forward_only ON audit_chain_head",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    "DROP FUNCTION IF EXISTS audit_head_forward_only()",
    "DROP FUNCTION IF EXISTS audit_refuse_change()",
)


def _hash(row: dict[str, Any]) -> str:
    document = {name: row[name] for name in FIELDS}
    document["occurred_at"] = row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document["v"] = 1
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _chain_existing_rows() -> tuple[int, str]:
    """Chain the rows already there, oldest first, in batches (bounded memory)."""
    conn = op.get_bind()
    seq, prev = 0, GENESIS
    last: tuple[datetime, str] | None = None
    columns = [_audit.c[name] for name in FIELDS if name not in ("seq", "prev_hash")]
    while True:
        query = sa.select(*columns).order_by(_audit.c.occurred_at, _audit.c.id).limit(1000)
        if last is not None:
            query = query.where(sa.tuple_(_audit.c.occurred_at, _audit.c.id) > sa.tuple_(*last))
        rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            return seq, prev
        for row in rows:
            seq += 1
            row.update(seq=seq, prev_hash=prev)
            prev = _hash(row)
            conn.execute(
                _audit.update()
                .where(_audit.c.id == row["id"])
                .values(seq=seq, prev_hash=row["prev_hash"], hash=prev)
            )
        last = (rows[-1]["occurred_at"], rows[-1]["id"])


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    seq, head = _chain_existing_rows()
    op.get_bind().execute(_head.insert().values(id=1, seq=seq, hash=head))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_audit_events_seq"), ["seq"])
        batch_op.create_index("ix_audit_events_occurred", ["occurred_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_DROP_TRIGGERS:
            op.execute(statement)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_occurred")
        batch_op.drop_constraint(op.f("uq_audit_events_seq"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    op.drop_table("audit_chain_head")
