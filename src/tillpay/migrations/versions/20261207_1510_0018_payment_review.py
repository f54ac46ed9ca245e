"""payment review

An operator clears a payment's ``needs_review`` flag (``payments/review.py``): who did,
when and why are kept on the payment (``reviewed_by``, ``reviewed_at``,
``review_note``). The console's needs-review filter reads flagged payments newest first
through a partial index over flagged rows only, and a payment's page finds the outbox
events of its payment and refunds (and so their merchant webhook deliveries) by subject.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tillpay.kit.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("reviewed_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("reviewed_by", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("review_note", sa.String(length=500), nullable=True))
    op.create_index(
        "ix_payments_needs_review_created_at_id",
        "payments",
        ["created_at", "id"],
        unique=False,
        postgresql_where=sa.text("needs_review"),
        sqlite_where=sa.text("needs_review = 1"),
    )
    op.create_index(
        "ix_outbox_events_subject", "outbox_events", ["subject_type", "subject_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_events_subject", table_name="outbox_events")
    op.drop_index("ix_payments_needs_review_created_at_id", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("review_note")
        batch.drop_column("reviewed_by")
        batch.drop_column("reviewed_at")
