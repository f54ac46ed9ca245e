"""headless payments

Orders gain a ``kind`` (``shop`` | ``headless``); a headless order has no tillpay customer
(``customer_id`` NULL) but a ``merchant`` and the shop's own ``reference`` (unique per
merchant), its payer's email / external id, a description and bounded metadata. Payments'
``customer_id`` becomes nullable for the same reason.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sa.Enum("shop", "headless", name="orderkind", native_enum=False, length=16),
                server_default="shop",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("merchant", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reference", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("customer_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("customer_external_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("description", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        batch.alter_column("customer_id", existing_type=sa.String(length=40), nullable=True)
        batch.create_unique_constraint("uq_orders_merchant_reference", ["merchant", "reference"])
        batch.create_index("ix_orders_merchant_id", ["merchant", "id"], unique=False)
        batch.create_check_constraint(
            op.f("ck_orders_kind_owner"),
            "(kind = 'shop' AND customer_id IS NOT NULL AND merchant IS NULL) OR "
            "(kind = 'headless' AND customer_id IS NULL AND merchant IS NOT NULL "
            "AND reference IS NOT NULL)",
        )
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("customer_id", existing_type=sa.String(length=40), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("customer_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_kind_owner"), type_="check")
        batch.drop_index("ix_orders_merchant_id")
        batch.drop_constraint("uq_orders_merchant_reference", type_="unique")
        batch.alter_column("customer_id", existing_type=sa.String(length=40), nullable=False)
        for column in (
            "metadata",
            "description",
            "customer_external_id",
            "customer_email",
            "reference",
            "merchant",
            "kind",
        ):
            batch.drop_column(column)
