"""job leases

One row per exclusive job: which worker may run it, until when (kit/leases.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tillpay.kit.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(holder) > 0", name=op.f("ck_job_leases_holder_present")),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_job_leases_name_present")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
