"""Provider webhooks: store once, then process (re-read the provider, apply under the
locks), retry, dead-letter and replay."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.kit.db import claim_due_rows, utcnow
from tillpay.kit.errors import BadRequest, Conflict, Forbidden, NotFound
from tillpay.kit.jobs import for_each, nudge_after_commit
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import ProviderError, ProviderUnavailable
from tillpay.payments import ignored_events
from tillpay.payments.apply import (
    apply_provider_state,
    apply_refund_state,
    lock_attempt,
    lock_payment,
    lock_refund,
)
from tillpay.payments.errors import RetryLater
from tillpay.payments.models import (
    PaymentAttempt,
    PaymentStatus,
    Refund,
    WebhookEvent,
    WebhookEventStatus,
)
from tillpay.payments.providers.base import ProviderAdapter, WebhookNotice
from tillpay.payments.refund_matching import match_refund, record_external_refund
from tillpay.payments.runtime import PaymentsRuntime

log = get_logger(__name__)

ingest_log = get_logger("tillpay.payments")
security_log = get_logger("tillpay.security")

WEBHOOK_MAX_ATTEMPTS = 10
#: How long a claimed event is left to the processor that claimed it.
CLAIM_LEASE = timedelta(minutes=2)


#: The worker job that processes stored events (an in-process worker is nudged at once).
PROCESS_JOB = "payments.process_webhooks"


async def receive_webhook(
    session: AsyncSession,
    provider: str,
    adapter: ProviderAdapter,
    *,
    source_ip: str | None,
    read_body: Callable[[], Awaitable[bytes]],
    headers: Mapping[str, str],
) -> bool:
    """Verify a delivery and store it once (False for a duplicate). A verified event tillpay
    does not act on is stored as ``ignored``; only a bad signature, a refused source or a
    body that is not JSON is refused."""
    # Optional source allow-list (defence in depth, never the gate): the client address
    # comes from the trusted-proxy middleware, not from a header the caller controls.
    allowed_source = getattr(adapter, "allowed_source", None)
    if allowed_source is not None and not allowed_source(source_ip):
        security_log.warning("webhook.source_refused", provider=provider, ip=source_ip)
        raise Forbidden("Webhook source not allowed.", code="webhook_source_refused")
    body = await read_body()
    lowered = {k.lower(): v for k, v in headers.items()}
    if not adapter.verify_webhook(body, lowered):
        security_log.warning("webhook.signature_invalid", provider=provider, size=len(body))
        raise BadRequest("Invalid webhook signature.", code="invalid_signature")
    try:
        # UTF-8 only (json.loads would also take UTF-16, whose NUL bytes no backend
        # stores); valid JSON then holds no raw control characters.
        json.loads(body.decode("utf-8"))
    except ValueError:  # not UTF-8 or not JSON: nothing could ever read it
        security_log.warning("webhook.payload_malformed", provider=provider, size=len(body))
        raise BadRequest("Malformed webhook payload.", code="malformed_webhook") from None
    reason = ignored_events.NOT_HANDLED
    try:
        notice = adapter.parse_webhook(body, lowered)
    except Exception:  # noqa: BLE001 - a signed event of a shape this adapter cannot read
        ingest_log.warning("webhook.payload_unexpected_shape", provider=provider, size=len(body))
        notice, reason = None, ignored_events.UNEXPECTED_SHAPE
    if notice is None:
        return await ignored_events.store_ignored_webhook(session, provider, body, reason=reason)
    stored = await store_webhook(session, provider, notice, body)
    if stored:
        nudge_after_commit(session, PROCESS_JOB)
    return stored


async def store_webhook(
    session: AsyncSession, provider: str, notice: WebhookNotice, payload: bytes
) -> bool:
    """Store a verified webhook once; False when it was a duplicate delivery."""
    existing = (
        await session.execute(
            select(WebhookEvent.id).where(
                WebhookEvent.provider == provider, WebhookEvent.dedupe_key == notice.dedupe_key
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(
                WebhookEvent(
                    provider=provider,
                    dedupe_key=notice.dedupe_key[:255],
                    event_type=notice.event_type[:64],
                    reference=notice.reference,
                    payload=payload.decode("utf-8", errors="replace"),
                )
            )
            await session.flush()
    except IntegrityError:
        return False  # a parallel delivery stored it first
    return True


async def process_webhook(rt: PaymentsRuntime, event_id: str) -> str:
    """Process one stored event: re-read the provider, then apply under the locks.
    Returns ``processed``, ``retry`` or ``dead``."""
    async with rt.database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        if event is None or event.status is not WebhookEventStatus.PENDING:
            return WebhookEventStatus.PROCESSED
        claim = Claim(event.id, event.provider, event.payload)
    return await process_claimed(rt, claim)


@dataclass(frozen=True)
class Claim:
    """A pending event as its processor claimed it."""

    event_id: str
    provider: str
    payload: str


async def process_claimed(rt: PaymentsRuntime, claim: Claim) -> str:
    """Process a claimed event (see :func:`process_webhook`); every change is made under
    the event's row lock, where its status is checked again."""
    event_id, payload = claim.event_id, claim.payload.encode()
    adapter = rt.providers.get(claim.provider)
    try:
        if adapter is None:
            raise RetryLater("provider disabled")
        notice = adapter.parse_webhook(payload, {})
        if notice is None:
            return await _finish_event(rt, event_id, status=WebhookEventStatus.PROCESSED)
        if notice.kind == "payment":
            await _process_payment_notice(rt, adapter, notice, event_id)
        else:
            await _process_refund_notice(rt, adapter, notice, event_id)
        return WebhookEventStatus.PROCESSED
    except RetryLater as exc:
        return await _finish_event(rt, event_id, status="retry", error=exc.detail)
    except Exception as exc:
        log.exception("payments.webhook_processing_failed", event_id=event_id)
        return await _finish_event(rt, event_id, status="retry", error=type(exc).__name__)


async def _finish_event(
    rt: PaymentsRuntime, event_id: str, *, status: str, error: str | None = None
) -> str:
    async with rt.database.transaction() as session:
        event = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
            )
        ).scalar_one()
        if event.status is not WebhookEventStatus.PENDING:
            return event.status
        if status == WebhookEventStatus.PROCESSED:
            event.status = WebhookEventStatus.PROCESSED
            event.processed_at = utcnow()
            return WebhookEventStatus.PROCESSED
        event.attempts += 1
        event.last_error = (error or "")[:255]
        if event.attempts >= WEBHOOK_MAX_ATTEMPTS:
            event.status = WebhookEventStatus.DEAD
            log.error("payments.webhook_dead", event_id=event.id, provider=event.provider)
            return WebhookEventStatus.DEAD
        event.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 2**event.attempts))
        return "retry"


async def _lock_pending_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """Lock a stored event; None once another worker has handled it."""
    event = (
        await session.execute(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        )
    ).scalar_one()
    return event if event.status is WebhookEventStatus.PENDING else None


def _mark_processed(event: WebhookEvent) -> None:
    event.status = WebhookEventStatus.PROCESSED
    event.processed_at = utcnow()


async def _attempt_for(
    session: AsyncSession, provider: str, notice: WebhookNotice
) -> PaymentAttempt | None:
    query = select(PaymentAttempt).where(PaymentAttempt.provider == provider)
    if notice.reference:
        query = query.where(PaymentAttempt.reference == notice.reference)
    elif notice.provider_object_id:
        query = query.where(PaymentAttempt.provider_object_id == notice.provider_object_id)
    else:
        return None
    return (await session.execute(query)).scalar_one_or_none()


async def _process_payment_notice(
    rt: PaymentsRuntime, adapter: ProviderAdapter, notice: WebhookNotice, event_id: str
) -> None:
    async with rt.database.session() as session:
        attempt = await _attempt_for(session, adapter.name, notice)
        if attempt is None:
            raise RetryLater("no attempt for this event yet")
        attempt_id, payment_id = attempt.id, attempt.payment_id
        reference, object_id = (
            attempt.reference,
            attempt.provider_object_id or notice.provider_object_id,
        )
    try:
        # The webhook is a hint; the provider's API is the truth.
        provider_state = await adapter.retrieve(reference=reference, provider_object_id=object_id)
    except (ProviderUnavailable, ProviderError) as exc:
        raise RetryLater(f"provider re-read failed: {type(exc).__name__}") from None
    async with rt.database.transaction() as session:
        event = await _lock_pending_event(session, event_id)
        if event is None:
            return
        order, payment = await lock_payment(session, payment_id)
        attempt = await lock_attempt(session, attempt_id)
        await apply_provider_state(
            session,
            rt.settings,
            order,
            payment,
            attempt,
            provider_state,
            confirmed=True,
            source="webhook",
        )
        _mark_processed(event)


async def _process_refund_notice(
    rt: PaymentsRuntime, adapter: ProviderAdapter, notice: WebhookNotice, event_id: str
) -> None:
    """Apply a refund event once the provider's API confirms it: to tillpay's own refund
    (by provider refund id, else by the tillpay id the provider keeps with it), or, for a
    refund made outside tillpay, to a new external refund."""
    if notice.reference is None and not await _known_refund_subject(rt, adapter.name, notice):
        notice = await _with_provider_reference(adapter, notice)
    async with rt.database.session() as session:
        refund = await _refund_by_provider_id(session, adapter.name, notice.provider_refund_id)
        if refund is not None:
            attempt = await session.get(PaymentAttempt, refund.attempt_id)
        else:
            attempt = await _attempt_for(session, adapter.name, notice)
        if attempt is None:
            # A refund event ahead of its payment, or for one tillpay never made: later
            # (after the retries it is a dead event an admin can replay).
            raise RetryLater("no payment for this refund event")
        if attempt.status is not PaymentStatus.SUCCEEDED:
            raise RetryLater("refund event for an attempt not captured yet")
        payment_id, attempt_id = attempt.payment_id, attempt.id
        object_id, reference = attempt.provider_object_id or "", attempt.reference
        refund_id = refund.id if refund is not None else ""
        provider_refund_id = notice.provider_refund_id or (
            refund.provider_refund_id if refund is not None else None
        )
    try:
        if provider_refund_id is not None:
            states = [
                await adapter.retrieve_refund(
                    refund_id=refund_id,
                    provider_refund_id=provider_refund_id,
                    provider_object_id=object_id,
                )
            ]
        elif object_id:
            # The event names no refund (Paystack): reconcile every refund of the payment.
            states = await adapter.transaction_refunds(
                provider_object_id=object_id, reference=reference
            )
        else:
            raise RetryLater("refund event without a provider refund id")
    except (ProviderUnavailable, ProviderError) as exc:
        raise RetryLater(f"provider re-read failed: {type(exc).__name__}") from None
    async with rt.database.transaction() as session:
        event = await _lock_pending_event(session, event_id)
        if event is None:
            return
        order, payment = await lock_payment(session, payment_id)
        for state in states:
            # Matched again under the payment lock: every refund writer holds it.
            matched = await match_refund(session, payment, state)
            if matched is None:
                matched = await record_external_refund(session, payment, attempt_id, state)
            if matched is not None:
                refund = await lock_refund(session, matched.id)
                await apply_refund_state(session, order, payment, refund, state, source="webhook")
        _mark_processed(event)


async def _known_refund_subject(rt: PaymentsRuntime, provider: str, notice: WebhookNotice) -> bool:
    """Whether tillpay finds the refund, or the attempt, a refund event names."""
    async with rt.database.session() as session:
        if await _refund_by_provider_id(session, provider, notice.provider_refund_id):
            return True
        return await _attempt_for(session, provider, notice) is not None


async def _with_provider_reference(
    adapter: ProviderAdapter, notice: WebhookNotice
) -> WebhookNotice:
    """A refund event that names another provider object than the one tillpay stored (a
    Stripe dashboard refund of a Checkout payment names its PaymentIntent), with the
    attempt reference the provider says that object carries."""
    try:
        reference = await adapter.refund_payment_reference(notice)
    except (ProviderUnavailable, ProviderError) as exc:
        raise RetryLater(f"provider re-read failed: {type(exc).__name__}") from None
    return notice if reference is None else replace(notice, reference=reference)


async def _refund_by_provider_id(
    session: AsyncSession, provider: str, provider_refund_id: str | None
) -> Refund | None:
    if not provider_refund_id:
        return None
    rows = await session.execute(
        select(Refund)
        .join(PaymentAttempt, PaymentAttempt.id == Refund.attempt_id)
        .where(PaymentAttempt.provider == provider, Refund.provider_refund_id == provider_refund_id)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    )
    return rows.scalars().first()


async def claim_due_webhooks(rt: PaymentsRuntime, *, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due events for this processor, oldest first. A claim is a
    lease (the event's next attempt moves ``CLAIM_LEASE`` ahead): other processors skip
    the rows being claimed (``SKIP LOCKED``) and the events claimed, so they take
    disjoint batches. Processing ends the lease (processed, or the retry's backoff); a
    processor that dies leaves the event to whoever finds it due once the lease lapses."""
    rows = await claim_due_rows(
        rt.database,
        WebhookEvent,
        WebhookEvent.next_attempt_at,
        (WebhookEvent.provider, WebhookEvent.payload),
        where=(WebhookEvent.status == WebhookEventStatus.PENDING,),
        order_by=WebhookEvent.received_at,
        now=utcnow(),
        limit=limit,
        lease=CLAIM_LEASE,
    )
    return [Claim(*row) for row in rows]


async def process_due_webhooks(
    rt: PaymentsRuntime, *, limit: int | None = None, max_events: int | None = None
) -> int:
    """Process due events: claim a batch, process it (``worker_width`` events at once,
    each in its own transactions), and claim the next at once while the last was full.
    Stops after ``max_events`` (the job then runs again at once); returns how many ran."""
    width = rt.settings.worker_width
    batch = limit or width * 4
    handled = 0
    while max_events is None or handled < max_events:
        claims = await claim_due_webhooks(rt, limit=batch)
        await for_each(claims, lambda claim: process_claimed(rt, claim), width=width)
        handled += len(claims)
        if len(claims) < batch:
            break
    return handled


async def replay_webhook(
    session: AsyncSession, principal: Principal, event_id: str
) -> WebhookEvent:
    event = (
        await session.execute(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        )
    ).scalar_one_or_none()
    if event is None:
        raise NotFound("No such webhook event.")
    if event.status is not WebhookEventStatus.DEAD:
        raise Conflict("Only dead events can be replayed.", code="event_not_dead")
    event.status = WebhookEventStatus.PENDING
    event.attempts = 0
    event.next_attempt_at = utcnow()
    nudge_after_commit(session, PROCESS_JOB)
    await record(
        session,
        principal.actor(),
        "admin.webhook_replayed",
        target_type="webhook_event",
        target_id=event.id,
    )
    return event
