"""The customer-mail consumer: one ``email`` delivery per event that calls for a mail,
sent with retries and back-off. The event id travels as a tag, and a delivery is booked
sent only after the mail server took it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.customer_mail.messages import TEMPLATES, compose
from tillpay.events import dispatch
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.notifications.mail import EmailMessageSpec, MailDeliveryError, Mailer, build_mailer
from tillpay.settings import Settings

log = get_logger(__name__)

SEND_JOB = "customer_mail.send"
CONSUMER = "email"
CLAIM_LEASE = timedelta(minutes=2)
BATCH = 50
#: Seconds before each attempt: a quick ramp, then every 30 minutes for ~40 days.
SCHEDULE: tuple[int, ...] = (0, 10, 60, 300, 900, *([1800] * 2000))


async def fan_out(session: AsyncSession, events: Sequence[OutboxEvent]) -> list[tuple[str, str]]:
    return [(event.id, CONSUMER) for event in events if event.type in TEMPLATES]


def mailer_of(context: JobContext[Settings]) -> Mailer:
    return build_mailer(context.settings)


async def send_due(context: JobContext[Settings], *, now: datetime | None = None) -> bool:
    """Send one batch of due customer mail; True when the batch was full."""
    clock = now or utcnow()
    claimed = await dispatch.claim(
        context.database, consumer_prefix=CONSUMER, now=clock, limit=BATCH, lease=CLAIM_LEASE
    )
    if not claimed:
        return False
    mailer = context.shared(mailer_of)
    for index, item in enumerate(claimed):
        error: str | None = None
        async with context.database.read_session() as session:
            event = await session.get(OutboxEvent, item.event_id)
            messages: list[EmailMessageSpec] = (
                await compose(session, context.settings, event) if event is not None else []
            )
        for message in messages:
            try:
                await mailer.send(message)
            except MailDeliveryError as exc:
                error = f"mail server unavailable ({type(exc.__cause__ or exc).__name__})"
                log.warning("customer_mail.send_failed", event_id=item.event_id, error=error)
                break
        async with context.database.transaction() as session:
            booked = await dispatch.record_outcome(
                session, item.id, error=error, schedule=SCHEDULE, now=clock
            )
            if error is not None:
                # The server is down: the rest of the batch is not tried now (each would
                # time out in turn) but is due again with the failed mail's retry. Left
                # claimed, it would wait out the whole CLAIM_LEASE instead.
                rest = claimed[index + 1 :]
                retry = booked.next_attempt_at if booked is not None else None
                await dispatch.unclaim(
                    session, rest, claimed_until=clock + CLAIM_LEASE, due=retry or clock
                )
        if error is not None:
            if rest:
                log.info(
                    "customer_mail.batch_deferred",
                    deliveries=len(rest),
                    due=(retry or clock).isoformat(),
                )
            break
    return len(claimed) >= BATCH
