"""sandbox status checks

The sandbox's session and refund statuses are enums (``SessionStatus``,
``SandboxRefundStatus``); the database now refuses any other value.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the enums' values as of this revision.
SESSION_STATUSES = "status IN ('open', 'succeeded', 'failed', 'processing', 'expired')"
REFUND_STATUSES = "status IN ('succeeded')"


def upgrade() -> None:
    with op.batch_alter_table("sandbox_sessions", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_sandbox_sessions_status_known"), SESSION_STATUSES)
    with op.batch_alter_table("sandbox_refunds", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_sandbox_refunds_status_known"), REFUND_STATUSES)


def downgrade() -> None:
    with op.batch_alter_table("sandbox_refunds", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_sandbox_refunds_status_known"), type_="check")
    with op.batch_alter_table("sandbox_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_sandbox_sessions_status_known"), type_="check")
