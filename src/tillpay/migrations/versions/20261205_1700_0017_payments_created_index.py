"""console lookups indexed

The console's payments list (and ``GET /v1/admin/payments``) orders by ``created_at``
descending with ``id`` as the tie-break: an index on both keeps a page a short index scan
at any table size. A payment's page finds its provider webhooks by (provider, reference)
and its ledger transactions by reference id.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_created_at_id", "payments", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_webhook_events_provider_reference", "webhook_events", ["provider", "reference"]
    )
    op.create_index("ix_ledger_transactions_reference_id", "ledger_transactions", ["reference_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_transactions_reference_id", table_name="ledger_transactions")
    op.drop_index("ix_webhook_events_provider_reference", table_name="webhook_events")
    op.drop_index("ix_payments_created_at_id", table_name="payments")
