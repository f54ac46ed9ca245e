"""machine credentials

API keys (SHA-256 of the secret, scopes, merchant, IP allow-list, expiry, revocation) and
the service-token ids already used within their lifetime (replay guard).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tillpay.kit.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("merchant", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=4), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("allowed_ips", sa.JSON(), nullable=True),
        sa.Column("expires_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("last_used_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "environment IN ('live', 'test')", name=op.f("ck_api_keys_environment_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    op.create_index("ix_api_keys_merchant", "api_keys", ["merchant"])
    op.create_table(
        "used_service_tokens",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", tillpay.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_used_service_tokens")),
    )
    op.create_index("ix_used_service_tokens_expires_at", "used_service_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_service_tokens_expires_at", table_name="used_service_tokens")
    op.drop_table("used_service_tokens")
    op.drop_index("ix_api_keys_merchant", table_name="api_keys")
    op.drop_table("api_keys")
