"""Reading an open attempt's state from its provider (browser return, janitor)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tillpay.kit.db import claim_due_rows, utcnow
from tillpay.kit.jobs import for_each
from tillpay.kit.outbound import ProviderError, ProviderUnavailable
from tillpay.payments import state as fsm
from tillpay.payments.apply import (
    apply_provider_state,
    lock_attempt,
    lock_payment,
    schedule_next_check,
    sync_payment_status,
)
from tillpay.payments.models import Payment, PaymentAttempt, PaymentStatus, Refund, RefundStatus
from tillpay.payments.providers.base import ProviderState
from tillpay.payments.refunds import sync_refund
from tillpay.payments.runtime import PaymentsRuntime


async def sync_attempt(rt: PaymentsRuntime, attempt_id: str, *, source: str) -> bool:
    """Read an attempt's state from its provider and apply it. True when the provider
    answered (whatever it said); False when it was unreachable (retried later)."""
    async with rt.database.session() as session:
        attempt = await session.get(PaymentAttempt, attempt_id)
        if attempt is None:
            return True
        provider, reference, object_id = (
            attempt.provider,
            attempt.reference,
            attempt.provider_object_id,
        )
        payment_id, created_at = attempt.payment_id, attempt.created_at
    adapter = rt.providers.get(provider)
    if adapter is None:
        return False
    provider_state: ProviderState | None = None
    not_found = False
    try:
        provider_state = await adapter.retrieve(reference=reference, provider_object_id=object_id)
    except ProviderUnavailable:
        pass
    except ProviderError as exc:
        not_found = exc.code == "not_found"
    async with rt.database.transaction() as session:
        order, payment = await lock_payment(session, payment_id)
        attempt = await lock_attempt(session, attempt_id)
        if provider_state is not None:
            await apply_provider_state(
                session,
                rt.settings,
                order,
                payment,
                attempt,
                provider_state,
                confirmed=True,
                source=source,
            )
            return True
        attempt.check_count += 1
        if (
            not_found
            and attempt.status is PaymentStatus.UNKNOWN
            and utcnow() - created_at > timedelta(hours=1)
        ):
            # The provider has no such object: the create never reached it.
            attempt.status = PaymentStatus.FAILED
            attempt.error_code = "not_created"
            await sync_payment_status(
                session, rt.settings, order, payment, attempt, PaymentStatus.UNKNOWN, source=source
            )
        schedule_next_check(rt.settings, attempt, utcnow())
        return not_found


async def sync_payment(rt: PaymentsRuntime, payment_id: str, *, source: str) -> Payment | None:
    """Sync the latest attempt of an open payment (used by the browser return)."""
    async with rt.database.session() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None:
            return None
        latest = payment.attempts[-1] if payment.attempts else None
        open_attempt = latest is not None and latest.status in fsm.OPEN
        attempt_id = latest.id if latest is not None else None
    if open_attempt and attempt_id is not None:
        await sync_attempt(rt, attempt_id, source=source)
    async with rt.database.session() as session:
        return await session.get(Payment, payment_id)


# ----------------------------------------------------------------------------- janitor


#: How long an attempt or refund a janitor pass claimed is left to that pass.
JANITOR_LEASE = timedelta(minutes=2)


async def _claim_due(
    rt: PaymentsRuntime, model: type[PaymentAttempt] | type[Refund], moment: datetime, limit: int
) -> list[str]:
    """Claim up to ``limit`` open rows of ``model`` due for a check: their next check moves
    ``JANITOR_LEASE`` ahead (the sync sets the real one), and rows another pass is
    claiming are skipped, so janitors in several processes take disjoint rows."""
    statuses = fsm.OPEN if model is PaymentAttempt else (RefundStatus.PENDING, RefundStatus.UNKNOWN)
    rows = await claim_due_rows(
        rt.database,
        model,
        model.next_check_at,
        where=(model.status.in_(statuses),),
        order_by=model.next_check_at,
        now=moment,
        limit=limit,
        lease=JANITOR_LEASE,
    )
    return [row[0] for row in rows]


async def janitor_pass(rt: PaymentsRuntime, *, now: datetime | None = None, limit: int = 50) -> int:
    """Re-poll open attempts and refunds whose next check is due, claiming batches of
    ``limit`` until one is not full. Never touches a final state: the apply function
    refuses to move one."""
    moment = now or utcnow()
    width = rt.settings.worker_width
    handled = 0

    async def attempt(attempt_id: str) -> None:
        await sync_attempt(rt, attempt_id, source="janitor")

    async def refund(refund_id: str) -> None:
        await sync_refund(rt, refund_id)

    for model, sync in ((PaymentAttempt, attempt), (Refund, refund)):
        while True:
            ids = await _claim_due(rt, model, moment, limit)
            await for_each(ids, sync, width=width)
            handled += len(ids)
            if len(ids) < limit:
                break
    return handled
