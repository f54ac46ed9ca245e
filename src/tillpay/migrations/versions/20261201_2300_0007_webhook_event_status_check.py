"""webhook event status check

``webhook_events.status`` takes only the values of ``WebhookEventStatus`` (a CHECK
constraint; batch mode rebuilds the table on SQLite, which cannot add one in place).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_webhook_events_status_known"),
            "status IN ('pending', 'processed', 'dead', 'ignored')",
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_webhook_events_status_known"), type_="check")
