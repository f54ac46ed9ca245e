"""The console's payment queries: a filtered, keyset-paginated list and one payment's
page (attempts, refunds, provider webhooks, merchant webhook deliveries, ledger, audit),
as the principal may see.

Who sees what: a person holding ``orders:read_any`` (an administrator with 2FA) every
payment; a vendor only payments of orders whose every line is theirs (the rule that lets
a vendor refund, ``payments/refunds.py``), so no other vendor's goods show; others none.
Every query is indexed: payments by (created_at, id) (flagged ones by a partial index of
their own), attempts and refunds by payment, webhooks by (provider, reference), outbox
events by subject and their deliveries by event, ledger transactions by reference id,
audit by target.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from tillpay.accounts.models import User
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import AdminTwoFactorRequired, Principal
from tillpay.audit.models import AuditEvent
from tillpay.events.models import EventDelivery, OutboxEvent
from tillpay.kit.errors import BadRequest, NotFound
from tillpay.kit.money import MoneyError, to_minor
from tillpay.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint
from tillpay.merchant_webhooks.service import CONSUMER_PREFIX, endpoint_of
from tillpay.orders.models import Order, OrderLine
from tillpay.payments.models import (
    Payment,
    PaymentAttempt,
    PaymentStatus,
    Refund,
    WebhookEvent,
)

PAGE_SIZE = 25
#: The merchant webhook deliveries a payment's page lists (newest events first).
DELIVERIES_SHOWN = 50


@dataclass(frozen=True)
class PaymentFilter:
    """The list's query string, validated (a bad value is a 400 page, never a 500)."""

    status: str = ""
    provider: str = ""
    currency: str = ""
    amount_min: str = ""
    amount_max: str = ""
    date_from: str = ""
    date_to: str = ""
    email: str = ""
    order_id: str = ""
    q: str = ""  # a payment id or a provider reference
    needs_review: str = ""  # "1": flagged payments only
    after: str = ""  # the keyset cursor

    def as_query(self, **changes: str) -> dict[str, str]:
        values = {k: v for k, v in self.__dict__.items() if v}
        values.update(changes)
        return {k: v for k, v in values.items() if v}


def _visible(principal: Principal) -> ColumnElement[bool] | None:
    """The payments ``principal`` may see (None: all)."""
    if Permission.ORDERS_READ_ANY in principal.withheld:
        raise AdminTwoFactorRequired()  # an administrator signed in without 2FA: 403
    if Permission.ORDERS_READ_ANY in principal.permissions:
        return None
    if Permission.ORDERS_READ_VENDOR not in principal.permissions:
        return Payment.id.is_(None)  # nothing
    mine = OrderLine.order_id == Payment.order_id
    return and_(
        exists().where(mine, OrderLine.vendor_id == principal.user_id),
        not_(
            exists().where(
                mine, or_(OrderLine.vendor_id.is_(None), OrderLine.vendor_id != principal.user_id)
            )
        ),
    )


def _amount(text: str, currency: str) -> int:
    try:
        return to_minor(Decimal(text), currency or "USD")
    except (InvalidOperation, MoneyError, ValueError):
        raise BadRequest(f"{text!r} is not an amount.") from None


def _day(text: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{text!r} is not a date (YYYY-MM-DD).") from None


def _cursor(payment: Payment) -> str:
    raw = f"{payment.created_at.isoformat()}|{payment.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _uncursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, _, payment_id = raw.partition("|")
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise BadRequest("The page link is invalid.") from None
    if moment.tzinfo is None or not payment_id:
        raise BadRequest("The page link is invalid.")
    return moment, payment_id


def _conditions(where: PaymentFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.status:
        try:
            conditions.append(Payment.status == PaymentStatus(where.status))
        except ValueError:
            raise BadRequest(f"{where.status!r} is not a payment status.") from None
    if where.provider:
        conditions.append(Payment.provider == where.provider)
    if where.currency:
        conditions.append(Payment.currency == where.currency.upper())
    if where.amount_min:
        conditions.append(Payment.amount >= _amount(where.amount_min, where.currency.upper()))
    if where.amount_max:
        conditions.append(Payment.amount <= _amount(where.amount_max, where.currency.upper()))
    if where.date_from:
        conditions.append(Payment.created_at >= _day(where.date_from))
    if where.date_to:
        conditions.append(Payment.created_at < _day(where.date_to) + timedelta(days=1))
    if where.order_id:
        conditions.append(Payment.order_id == where.order_id)
    if where.email:
        address = where.email.strip().lower()
        by_account = select(User.id).where(User.email == address).scalar_subquery()
        by_order = select(Order.id).where(Order.customer_email == address)
        conditions.append(or_(Payment.customer_id == by_account, Payment.order_id.in_(by_order)))
    if where.needs_review:
        if where.needs_review != "1":
            raise BadRequest("needs_review takes 1 (flagged payments only) or nothing.")
        # Bare, as the partial index's predicate is written (not ``IS 1``/``IS true``,
        # which neither backend matches with it): ix_payments_needs_review_created_at_id.
        conditions.append(Payment.needs_review.expression)
    if where.q:
        term = where.q.strip()
        by_reference = select(PaymentAttempt.payment_id).where(PaymentAttempt.reference == term)
        conditions.append(or_(Payment.id == term, Payment.id.in_(by_reference)))
    return conditions


@dataclass
class PaymentPage:
    payments: list[Payment]
    next_cursor: str | None
    emails: dict[str, str] = field(default_factory=dict)


async def list_payments(
    session: AsyncSession, principal: Principal, where: PaymentFilter
) -> PaymentPage:
    """One page, newest first, after the cursor; with each customer's email."""
    query = select(Payment).order_by(Payment.created_at.desc(), Payment.id.desc())
    visible = _visible(principal)
    if visible is not None:
        query = query.where(visible)
    for condition in _conditions(where):
        query = query.where(condition)
    if where.after:
        moment, last_id = _uncursor(where.after)
        query = query.where(
            or_(
                Payment.created_at < moment,
                and_(Payment.created_at == moment, Payment.id < last_id),
            )
        )
    rows = list((await session.execute(query.limit(PAGE_SIZE + 1))).scalars())
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    ids = {p.customer_id for p in rows if p.customer_id}
    emails: dict[str, str] = {}
    if ids:
        found = await session.execute(select(User.id, User.email).where(User.id.in_(ids)))
        emails = {row.id: row.email for row in found}
    return PaymentPage(rows, _cursor(rows[-1]) if more else None, emails)


@dataclass(frozen=True)
class Delivery:
    """One merchant webhook delivery of an event about the payment or one of its refunds,
    with its last HTTP attempt (None before the first)."""

    delivery: EventDelivery
    event_type: str
    endpoint_id: str
    endpoint_url: str | None  # None: the endpoint was deleted since
    last_attempt: WebhookAttempt | None


@dataclass
class PaymentDetail:
    payment: Payment
    order: Order
    customer_email: str | None
    attempts: list[PaymentAttempt]
    refunds: list[Refund]
    webhooks: list[WebhookEvent]
    ledger: list[dict[str, Any]]
    audit: list[AuditEvent]
    #: Shown to those who manage webhook endpoints only (None: not shown).
    deliveries: list[Delivery] | None = None

    @property
    def refundable(self) -> int:
        return self.payment.amount_captured - self.payment.amount_refund_reserved


async def visible_payment(session: AsyncSession, principal: Principal, payment_id: str) -> Payment:
    """The payment if ``principal`` may see it, else 404 (whether or not it exists)."""
    query = select(Payment).where(Payment.id == payment_id)
    visible = _visible(principal)
    if visible is not None:
        query = query.where(visible)
    payment = (await session.execute(query)).scalar_one_or_none()
    if payment is None:
        raise NotFound("No such payment.")
    return payment


async def payment_detail(
    session: AsyncSession, principal: Principal, payment_id: str
) -> PaymentDetail:
    payment = await visible_payment(session, principal, payment_id)
    order = await session.get(Order, payment.order_id)
    assert order is not None
    attempts = list(
        (
            await session.execute(
                select(PaymentAttempt)
                .where(PaymentAttempt.payment_id == payment.id)
                .order_by(PaymentAttempt.attempt_no)
            )
        ).scalars()
    )
    refunds = list(
        (
            await session.execute(
                select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.created_at)
            )
        ).scalars()
    )
    references = [a.reference for a in attempts]
    webhooks = (
        list(
            (
                await session.execute(
                    select(WebhookEvent)
                    .where(
                        WebhookEvent.provider == payment.provider,
                        WebhookEvent.reference.in_(references),
                    )
                    .order_by(WebhookEvent.received_at)
                    .limit(100)
                )
            ).scalars()
        )
        if references
        else []
    )
    subjects = [payment.id, *(r.id for r in refunds)]
    ledger = await _ledger(session, subjects)
    audit = list(
        (
            await session.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.target_type.in_(("payment", "refund")),
                    AuditEvent.target_id.in_(subjects),
                )
                .order_by(AuditEvent.seq)
                .limit(200)
            )
        ).scalars()
    )
    email = order.customer_email
    if email is None and payment.customer_id:
        email = await session.scalar(select(User.email).where(User.id == payment.customer_id))
    detail = PaymentDetail(payment, order, email, attempts, refunds, webhooks, ledger, audit)
    if Permission.WEBHOOKS_MANAGE in principal.permissions:
        detail.deliveries = await deliveries(session, payment.id, [r.id for r in refunds])
    return detail


async def deliveries(
    session: AsyncSession, payment_id: str, refund_ids: list[str]
) -> list[Delivery]:
    """The merchant webhook deliveries of the events about the payment and its refunds
    (an event's subject is the object it describes), newest event first, at most
    :data:`DELIVERIES_SHOWN`."""
    about = and_(OutboxEvent.subject_type == "payment", OutboxEvent.subject_id == payment_id)
    if refund_ids:
        about = or_(
            about,
            and_(OutboxEvent.subject_type == "refund", OutboxEvent.subject_id.in_(refund_ids)),
        )
    rows = (
        await session.execute(
            select(EventDelivery, OutboxEvent.type)
            .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .where(about, EventDelivery.consumer.startswith(CONSUMER_PREFIX, autoescape=True))
            .order_by(OutboxEvent.created_at.desc(), EventDelivery.id.desc())
            .limit(DELIVERIES_SHOWN)
        )
    ).all()
    if not rows:
        return []
    ids = [delivery.id for delivery, _ in rows]
    last: dict[str, WebhookAttempt] = {}
    attempts = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(ids))
        .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
    )
    for attempt in attempts.scalars():
        last[attempt.delivery_id] = attempt
    endpoint_ids = {endpoint_of(delivery.consumer) for delivery, _ in rows}
    found = await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.url).where(WebhookEndpoint.id.in_(endpoint_ids))
    )
    urls = {row.id: row.url for row in found}
    return [
        Delivery(
            delivery,
            event_type,
            endpoint_of(delivery.consumer),
            urls.get(endpoint_of(delivery.consumer)),
            last.get(delivery.id),
        )
        for delivery, event_type in rows
    ]


async def _ledger(session: AsyncSession, reference_ids: list[str]) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(
            LedgerTransaction.id.label("transaction_id"),
            LedgerTransaction.kind,
            LedgerTransaction.reference_id,
            LedgerTransaction.created_at,
            LedgerAccount.code,
            LedgerEntry.amount,
            LedgerEntry.currency,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.reference_id.in_(reference_ids))
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id, LedgerEntry.amount.desc())
    )
    return [dict(row._mapping) for row in rows]
