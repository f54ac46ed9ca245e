"""The daily admin digest: the previous UTC day's figures, written once a day as one
internal ``admin.digest`` outbox event, which the ``email`` consumer mails to every active
administrator (so a mail server that is down delays the digest and loses none).

The figures are computed when the event is written and kept in its payload: a mail retried
hours later still says what the day was, not what the tables say by then.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.events.service import emit_once
from tillpay.kit.db import utcnow
from tillpay.kit.ids import derived_id
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.models import Payment, PaymentStatus, Refund, WebhookEvent, WebhookEventStatus
from tillpay.settings import Settings

log = get_logger(__name__)

DIGEST_JOB = "customer_mail.admin_digest"
EVENT_TYPE = "admin.digest"
#: At most this many payments or events are listed per section (the count is exact).
LISTED = 20
#: Failed merchant webhook deliveries are counted for events of this many recent days.
DELIVERIES_WINDOW = timedelta(days=7)


def due_day(now: datetime, at: time) -> date | None:
    """The day whose digest is due at ``now``: yesterday (UTC) once today's ``at`` has
    passed, else None. A worker that was down at ``at`` sends it later that same day; one
    down until midnight skips it (a digest is about yesterday, not a backlog)."""
    now = now.astimezone(UTC)
    return now.date() - timedelta(days=1) if now.time() >= at else None


def event_id_of(day: date) -> str:
    """The digest event's id: fixed by its day (not by the send time, which an operator
    may change after the day's digest went out), so a second write of it conflicts."""
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    return derived_id(
        "evt", f"{EVENT_TYPE}:{day.isoformat()}", timestamp_ms=int(end.timestamp()) * 1000
    )


def _payment_item(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "provider": payment.provider,
        "amount": payment.amount,
        "currency": payment.currency,
    }


async def _totals(session: AsyncSession, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Captures and refunds by provider and currency, dated by their ledger posting (the
    moment the money moved, posted once per movement)."""
    posted = (LedgerTransaction.created_at >= start) & (LedgerTransaction.created_at < end)
    captured = await session.execute(
        select(Payment.provider, Payment.currency, func.count(), func.sum(Payment.amount))
        .join(LedgerTransaction, LedgerTransaction.reference_id == Payment.id)
        .where(LedgerTransaction.kind == "payment", posted)
        .group_by(Payment.provider, Payment.currency)
    )
    refunded = await session.execute(
        select(Payment.provider, Refund.currency, func.count(), func.sum(Refund.amount))
        .join(Payment, Payment.id == Refund.payment_id)
        .join(LedgerTransaction, LedgerTransaction.reference_id == Refund.id)
        .where(LedgerTransaction.kind == "refund", posted)
        .group_by(Payment.provider, Refund.currency)
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(provider: str, currency: str) -> dict[str, Any]:
        return rows.setdefault(
            (provider, currency),
            {
                "provider": provider,
                "currency": currency,
                "captured_count": 0,
                "captured_amount": 0,
                "refunded_count": 0,
                "refunded_amount": 0,
            },
        )

    for provider, currency, count, amount in captured:
        row(provider, currency).update(captured_count=count, captured_amount=int(amount))
    for provider, currency, count, amount in refunded:
        row(provider, currency).update(refunded_count=count, refunded_amount=int(amount))
    return [rows[key] for key in sorted(rows)]


async def _listed(session: AsyncSession, query: Any, count_query: Any) -> tuple[int, list[Any]]:
    count = int(await session.scalar(count_query) or 0)
    return count, list((await session.execute(query.limit(LISTED))).scalars())


async def figures(session: AsyncSession, day: date, *, now: datetime) -> dict[str, Any]:
    """The digest of ``day`` (UTC) as its event's ``data``."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    failed_where = (
        Payment.status == PaymentStatus.FAILED,
        # Failed is final: the row's last change is the failure.
        Payment.updated_at >= start,
        Payment.updated_at < end,
    )
    failed_count, failed = await _listed(
        session,
        select(Payment).where(*failed_where).order_by(Payment.updated_at, Payment.id),
        select(func.count()).select_from(Payment).where(*failed_where),
    )
    review_count, review = await _listed(
        session,
        select(Payment).where(Payment.needs_review.is_(True)).order_by(Payment.created_at),
        select(func.count()).select_from(Payment).where(Payment.needs_review.is_(True)),
    )
    dead = WebhookEvent.status == WebhookEventStatus.DEAD
    dead_count, dead_events = await _listed(
        session,
        select(WebhookEvent).where(dead).order_by(WebhookEvent.received_at),
        select(func.count()).select_from(WebhookEvent).where(dead),
    )
    undelivered = await session.scalar(
        select(func.count())
        .select_from(EventDelivery)
        .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
        .where(
            EventDelivery.consumer.startswith("webhook:"),
            EventDelivery.status == DeliveryStatus.FAILED,
            OutboxEvent.created_at >= now - DELIVERIES_WINDOW,
        )
    )
    return {
        "day": day.isoformat(),
        "totals": await _totals(session, start, end),
        "failed_payments": {"count": failed_count, "items": [_payment_item(p) for p in failed]},
        "needs_review": {
            "count": review_count,
            "items": [_payment_item(p) | {"reason": p.review_reason} for p in review],
        },
        "dead_webhook_events": {
            "count": dead_count,
            "items": [
                {
                    "id": e.id,
                    "provider": e.provider,
                    "event_type": e.event_type,
                    "received_at": e.received_at.isoformat().replace("+00:00", "Z"),
                    "last_error": e.last_error,
                }
                for e in dead_events
            ],
        },
        "failed_webhook_deliveries": {"count": int(undelivered or 0)},
    }


async def write_due(context: JobContext[Settings], *, now: datetime | None = None) -> bool:
    """Write the due day's digest event unless it exists (the exclusive daily job, run
    every minute: one primary-key read when there is nothing to do). Never reports more
    work: the next digest is a day away."""
    settings = context.settings
    clock = now or utcnow()
    day = due_day(clock, settings.admin_digest_time)
    if not settings.admin_digest_enabled or day is None:
        return False
    event_id = event_id_of(day)
    async with context.database.read_session() as session:
        if await session.get(OutboxEvent, event_id) is not None:
            return False
    async with context.database.transaction() as session:
        data = await figures(session, day, now=clock)
        # Two workers may get here (a lease that lapsed mid-run): the insert lets one win.
        written = await emit_once(
            session,
            event_id,
            EVENT_TYPE,
            subject_type="admin_digest",
            subject_id=day.isoformat(),
            data=data,
        )
    if written:
        log.info("customer_mail.admin_digest_written", day=day.isoformat(), event_id=event_id)
    return False


def mail_context(settings: Settings, event: OutboxEvent) -> tuple[str, dict[str, Any]]:
    """The subject and template context of the digest mail, from the event's figures."""
    data: dict[str, Any] = event.payload.get("data", {})
    day = date.fromisoformat(data["day"])
    shown = f"{day.day} {day:%B %Y}"
    review = data["needs_review"]["count"]
    subject = f"Daily digest for {shown}"
    if review:
        subject += f": {review} payment{'s need' if review > 1 else ' needs'} review"
    base = settings.public_base_url
    return subject, {
        "day": shown,
        "totals": data["totals"],
        "failed": data["failed_payments"],
        "review": data["needs_review"],
        "dead": data["dead_webhook_events"],
        "undelivered": data["failed_webhook_deliveries"]["count"],
        "listed": LISTED,
        "payment_url": f"{base}/v1/payments/",
        "review_url": f"{base}/v1/admin/payments?needs_review=true",
        "dead_url": f"{base}/v1/admin/webhook-events?status=dead",
    }
