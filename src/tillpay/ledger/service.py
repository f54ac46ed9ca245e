"""Posting balanced ledger transactions and reading balances.

Invariant, checked before anything is written: every transaction's entries sum to zero per
currency. ``(kind, reference_id)`` is unique, so a movement cannot be posted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


class UnbalancedTransaction(ValueError):
    """A ledger transaction whose entries do not sum to zero per currency."""


@dataclass(frozen=True)
class Line:
    """One entry to post: positive debits, negative credits."""

    account: str  # the account code, e.g. "provider_clearing:sandbox:USD"
    kind: str
    owner_id: str | None
    currency: str
    amount: int


def clearing(provider: str, currency: str, amount: int) -> Line:
    return Line(
        f"provider_clearing:{provider}:{currency}", "provider_clearing", None, currency, amount
    )


def unapplied(currency: str, amount: int) -> Line:
    """Suspense for money captured for an order that could not take it."""
    return Line(f"unapplied_payments:{currency}", "unapplied_payments", None, currency, amount)


def vendor_payable(vendor_id: str | None, currency: str, amount: int) -> Line:
    if vendor_id is None:
        return Line(f"platform_revenue:{currency}", "platform_revenue", None, currency, amount)
    return Line(
        f"vendor_payable:{vendor_id}:{currency}", "vendor_payable", vendor_id, currency, amount
    )


def merchant_payable(merchant: str, currency: str, amount: int) -> Line:
    """What tillpay owes a shop for its headless payments (its clearing/payable account)."""
    return Line(
        f"merchant_payable:{merchant}:{currency}", "merchant_payable", None, currency, amount
    )


def check_balanced(lines: Sequence[Line]) -> None:
    if len(lines) < 2:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if isinstance(line.amount, bool) or not isinstance(line.amount, int):
            raise UnbalancedTransaction("amounts are integers in minor units")
        totals[line.currency] += line.amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedTransaction(f"entries do not sum to zero: {unbalanced}")


async def _account(session: AsyncSession, line: Line) -> LedgerAccount:
    query = select(LedgerAccount).where(LedgerAccount.code == line.account)
    account = (await session.execute(query)).scalar_one_or_none()
    if account is not None:
        return account
    try:
        async with session.begin_nested():
            account = LedgerAccount(
                code=line.account, kind=line.kind, owner_id=line.owner_id, currency=line.currency
            )
            session.add(account)
            await session.flush()
    except IntegrityError:
        account = (await session.execute(query)).scalar_one()
    return account


async def post(
    session: AsyncSession,
    *,
    kind: str,
    reference_type: str,
    reference_id: str,
    lines: Sequence[Line],
) -> LedgerTransaction:
    """Write one balanced transaction in the caller's database transaction."""
    lines = [line for line in lines if line.amount != 0]
    check_balanced(lines)
    transaction = LedgerTransaction(
        kind=kind, reference_type=reference_type, reference_id=reference_id
    )
    session.add(transaction)
    await session.flush()
    for line in lines:
        account = await _account(session, line)
        session.add(
            LedgerEntry(
                transaction_id=transaction.id,
                account_id=account.id,
                amount=line.amount,
                currency=line.currency,
            )
        )
    await session.flush()
    return transaction


@dataclass(frozen=True)
class Balance:
    code: str
    kind: str
    owner_id: str | None
    currency: str
    balance: int
    account_id: str | None = None


async def balances(
    session: AsyncSession,
    *,
    owner_id: str | None = None,
    owner_ids: Sequence[str] | None = None,
) -> list[Balance]:
    """Every account's balance (entries summed), by code; only ``owner_id``'s accounts, or
    those of any of ``owner_ids``, when given."""
    query = (
        select(
            LedgerAccount.code,
            LedgerAccount.kind,
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            func.coalesce(func.sum(LedgerEntry.amount), 0),
            LedgerAccount.id,
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id, isouter=True)
        .group_by(LedgerAccount.id)
        .order_by(LedgerAccount.code)
    )
    if owner_id is not None:
        query = query.where(LedgerAccount.owner_id == owner_id)
    if owner_ids is not None:
        query = query.where(LedgerAccount.owner_id.in_(list(owner_ids)))
    rows = (await session.execute(query)).all()
    return [
        Balance(code, kind, owner, currency, int(total), account_id)
        for code, kind, owner, currency, total, account_id in rows
    ]


async def account_balance(session: AsyncSession, account_id: str) -> int:
    """One account's balance: its entries summed (debits positive)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


async def get_account(session: AsyncSession, account_id: str) -> LedgerAccount | None:
    return await session.get(LedgerAccount, account_id)


@dataclass(frozen=True)
class Entry:
    """One entry of an account, with the transaction it belongs to."""

    id: str
    amount: int
    currency: str
    created_at: datetime
    transaction_id: str
    transaction_kind: str
    reference_type: str
    reference_id: str


async def account_entries(
    session: AsyncSession, account_id: str, *, before: str | None, limit: int
) -> list[Entry]:
    """An account's entries, newest first, ``limit + 1`` of them (keyset on the entry id,
    which sorts by creation time; ``before`` is the last id of the previous page)."""
    query = (
        select(
            LedgerEntry.id,
            LedgerEntry.amount,
            LedgerEntry.currency,
            LedgerEntry.created_at,
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.reference_type,
            LedgerTransaction.reference_id,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.account_id == account_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    return [Entry(*row) for row in (await session.execute(query)).all()]


async def unbalanced_transactions(session: AsyncSession) -> list[str]:
    """Ids of transactions whose entries do not sum to zero (should always be empty)."""
    rows = await session.execute(
        select(LedgerEntry.transaction_id)
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount) != 0)
    )
    return sorted(set(rows.scalars()))


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` proportionally to ``weights`` in integers (largest remainder), so the
    parts always add up to ``total`` exactly."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("weights must sum to a positive number")
    shares = [total * w // weight_sum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


async def posted(session: AsyncSession, *, kind: str, reference_ids: Any) -> list[Line]:
    """Net amount per account of the ``kind`` transactions whose reference is in
    ``reference_ids`` (a list of ids or a scalar subquery), ordered by account code."""
    rows = await session.execute(
        select(
            LedgerAccount.code,
            LedgerAccount.kind,
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            func.sum(LedgerEntry.amount),
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.kind == kind, LedgerTransaction.reference_id.in_(reference_ids))
        .group_by(LedgerAccount.id)
        .order_by(LedgerAccount.code)
    )
    return [
        Line(code, account_kind, owner, currency, int(total))
        for code, account_kind, owner, currency, total in rows
    ]


def reversal(
    original: Sequence[Line], reversed_so_far: Mapping[str, int], amount: int
) -> list[Line]:
    """Lines that reverse ``amount`` of a posted single-currency transaction.

    Each side is spread (largest remainder) over what its accounts still hold after the
    earlier reversals (``reversed_so_far``: net amount per account code), so a reversal
    only touches accounts the original posted to, never takes more from one than it still
    holds, and the last reversal brings every account back exactly to zero.
    """
    if amount <= 0:
        raise ValueError("a reversal moves a positive amount")
    if len({line.currency for line in original}) != 1:
        raise ValueError("only a single-currency transaction can be reversed")
    check_balanced(original)
    lines: list[Line] = []
    for sign in (1, -1):  # debits (reversed by credits), then credits
        side = sorted(
            (line for line in original if line.amount * sign > 0), key=lambda x: x.account
        )
        left = [sign * (line.amount + reversed_so_far.get(line.account, 0)) for line in side]
        if any(held < 0 for held in left) or sum(left) < amount:
            raise ValueError("the reversal exceeds what the original still holds")
        parts = allocate(amount, left)
        lines += [
            replace(line, amount=-sign * part) for line, part in zip(side, parts, strict=True)
        ]
    return [line for line in lines if line.amount]


async def reversal_lines(
    session: AsyncSession,
    *,
    original_kind: str,
    original_id: str,
    reversal_kind: str,
    reversal_ids: Any,
    amount: int,
) -> list[Line]:
    """Lines reversing ``amount`` of the posted ``original_kind`` transaction of
    ``original_id``, over what the ``reversal_kind`` transactions of ``reversal_ids`` (a list
    or a scalar subquery) already reversed (see :func:`reversal`)."""
    original = await posted(session, kind=original_kind, reference_ids=[original_id])
    earlier = await posted(session, kind=reversal_kind, reference_ids=reversal_ids)
    return reversal(original, {line.account: line.amount for line in earlier}, amount)
