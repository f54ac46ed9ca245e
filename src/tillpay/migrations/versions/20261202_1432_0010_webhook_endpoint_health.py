"""webhook endpoint health

An endpoint remembers since when every delivery failed, and why tillpay disabled it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:32:15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tillpay.kit.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failing_since", tillpay.kit.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("failing_since")
