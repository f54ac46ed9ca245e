"""Ledger accounts, transactions and entries. Entries are never updated or deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


class LedgerAccount(Base):
    """``code`` names the account, e.g. ``provider_clearing:sandbox:USD`` or
    ``vendor_payable:usr_…:NGN``; one currency per account."""

    __tablename__ = "ledger_accounts"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("lac"))
    code: Mapped[str] = mapped_column(String(160), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    owner_id: Mapped[str | None] = mapped_column(IdColumn, index=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class LedgerTransaction(Base):
    """A balanced group of entries. ``(kind, reference_id)`` is unique, so the same money
    movement can never be posted twice."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("kind", "reference_id", name="uq_ledger_transactions_kind_reference"),
        Index("ix_ledger_transactions_reference_id", "reference_id"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("ltx"))
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    reference_type: Mapped[str] = mapped_column(String(32), nullable=False)
    reference_id: Mapped[str] = mapped_column(IdColumn, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class LedgerEntry(Base):
    """A signed amount on one account: positive = debit, negative = credit."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_id", "account_id"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("len"))
    transaction_id: Mapped[str] = mapped_column(
        IdColumn,
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    )
    account_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("ledger_accounts.id", ondelete="RESTRICT"), nullable=False
    )
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
