"""The overview's figures: volume today and over 30 days per provider and currency,
the success rate, refunds, payments needing review and dead provider webhooks; daily
volume for the chart. Grouped in SQL over the (created_at, id) index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.console.payments import _visible
from tillpay.kit.db import utcnow
from tillpay.payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
    WebhookEventStatus,
)

DAYS = 30
_SETTLED = (
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELED,
    PaymentStatus.EXPIRED,
)


@dataclass
class Overview:
    today: list[dict[str, object]] = field(default_factory=list)
    month: list[dict[str, object]] = field(default_factory=list)
    success_rate: float | None = None
    settled: int = 0
    refunds: list[dict[str, object]] = field(default_factory=list)
    needs_review: int = 0
    dead_events: int | None = None  # None: not the principal's to see
    chart_currency: str | None = None
    daily: list[tuple[str, int]] = field(default_factory=list)


async def overview(session: AsyncSession, principal: Principal) -> Overview:
    now = utcnow()
    start_today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = start_today - timedelta(days=DAYS - 1)
    visible = _visible(principal)
    scope = [Payment.created_at >= start]
    if visible is not None:
        scope.append(visible)
    result = Overview()
    succeeded = [*scope, Payment.status == PaymentStatus.SUCCEEDED]

    async def volume(*where: object) -> list[dict[str, object]]:
        rows = await session.execute(
            select(
                Payment.provider,
                Payment.currency,
                func.count().label("count"),
                func.sum(Payment.amount_captured).label("amount"),
            )
            .where(*where)  # type: ignore[arg-type]
            .group_by(Payment.provider, Payment.currency)
            .order_by(func.sum(Payment.amount_captured).desc())
        )
        return [dict(r._mapping) for r in rows]

    result.month = await volume(*succeeded)
    result.today = await volume(*succeeded, Payment.created_at >= start_today)
    counts = dict(
        (
            await session.execute(
                select(Payment.status, func.count())
                .where(*scope, Payment.status.in_(_SETTLED))
                .group_by(Payment.status)
            )
        ).all()
    )
    result.settled = sum(counts.values())
    if result.settled:
        result.success_rate = counts.get(PaymentStatus.SUCCEEDED, 0) / result.settled
    refund_scope = [Refund.created_at >= start, Refund.status == RefundStatus.SUCCEEDED]
    refund_query = select(
        Refund.currency, func.count().label("count"), func.sum(Refund.amount).label("amount")
    )
    if visible is not None:
        refund_query = refund_query.join(Payment, Payment.id == Refund.payment_id).where(visible)
    result.refunds = [
        dict(r._mapping)
        for r in await session.execute(refund_query.where(*refund_scope).group_by(Refund.currency))
    ]
    review = select(func.count()).select_from(Payment).where(Payment.needs_review.is_(True))
    if visible is not None:
        review = review.where(visible)
    result.needs_review = int(await session.scalar(review) or 0)
    if Permission.EVENTS_READ in principal.permissions:
        dead = select(func.count()).where(WebhookEvent.status == WebhookEventStatus.DEAD)
        result.dead_events = int(await session.scalar(dead) or 0)
    if result.month:
        currency = str(result.month[0]["currency"])
        result.chart_currency = currency
        result.daily = await _daily(session, succeeded, currency, start_today.date())
    return result


async def _daily(
    session: AsyncSession, where: Sequence[ColumnElement[bool]], currency: str, today: date
) -> list[tuple[str, int]]:
    day = func.date(Payment.created_at)
    rows = await session.execute(
        select(day.label("day"), func.sum(Payment.amount_captured))
        .where(*where, Payment.currency == currency)
        .group_by(day)
    )
    by_day = {str(d)[:10]: int(a or 0) for d, a in rows}
    days = [(today - timedelta(days=DAYS - 1 - i)).isoformat() for i in range(DAYS)]
    return [(d, by_day.get(d, 0)) for d in days]
