"""applied payments, external refunds

A succeeded payment is ``applied`` once its capture paid its order; the unique index that
allowed one succeeded payment per order now allows one *applied* payment per order, so a
second capture for the same order (or one for a cancelled order) can be recorded as
captured but unapplied. Refunds made outside tillpay are marked ``external``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A succeeded payment paid its order unless its capture was booked to unapplied_payments.
BACKFILL = sa.text(
    """
    UPDATE payments SET applied = :yes
    WHERE status = 'succeeded' AND NOT EXISTS (
        SELECT 1 FROM ledger_transactions t
        JOIN ledger_entries e ON e.transaction_id = t.id
        JOIN ledger_accounts a ON a.id = e.account_id
        WHERE t.kind = 'payment' AND t.reference_id = payments.id
          AND a.kind = 'unapplied_payments'
    )
    """
).bindparams(sa.bindparam("yes", True, type_=sa.Boolean()))

# Order.refunded_amount was never written: it is what the order's applied payment refunded.
REFUNDED_AMOUNTS = sa.text(
    """
    UPDATE orders SET refunded_amount = (
        SELECT p.amount_refunded FROM payments p WHERE p.order_id = orders.id AND p.applied
    )
    WHERE EXISTS (SELECT 1 FROM payments p WHERE p.order_id = orders.id AND p.applied)
    """
)


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("applied", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(BACKFILL)
    op.execute(REFUNDED_AMOUNTS)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column("applied", server_default=None)
        batch_op.drop_index(
            "uq_payments_order_id_succeeded",
            postgresql_where=sa.text("status = 'succeeded'"),
            sqlite_where=sa.text("status = 'succeeded'"),
        )
        batch_op.create_index(
            "uq_payments_order_id_applied",
            ["order_id"],
            unique=True,
            postgresql_where=sa.text("applied"),
            sqlite_where=sa.text("applied"),
        )
        batch_op.create_check_constraint(
            op.f("ck_payments_applied_succeeded"), "NOT applied OR status = 'succeeded'"
        )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.alter_column("external", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("external")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_applied_succeeded"), type_="check")
        batch_op.drop_index(
            "uq_payments_order_id_applied",
            postgresql_where=sa.text("applied"),
            sqlite_where=sa.text("applied"),
        )
        # Unapplied captures may share an order with the applied one: the old index
        # cannot come back while they exist.
        batch_op.create_index(
            "uq_payments_order_id_succeeded",
            ["order_id"],
            unique=True,
            postgresql_where=sa.text("status = 'succeeded'"),
            sqlite_where=sa.text("status = 'succeeded'"),
        )
        batch_op.drop_column("applied")
