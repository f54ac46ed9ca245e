"""Payment rules: creating payments and attempts, applying provider state (the one function
every path uses), refunds, webhook processing and the janitor.

Two rules shape this module:

1. **No network call inside a transaction.** Provider calls happen between short
   transactions (reserve → call → finalise), so no row lock is held while a provider
   answers, and SQLite's single writer is never blocked on the network.
2. **One way to change payment state.** The API's create call, the browser return, the
   webhook worker and the janitor all end in :func:`apply_provider_state`, under the same
   locks taken in the same order: order → payment → attempt → refund.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import User
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import Actor, record
from tillpay.events.service import emit
from tillpay.kit import idempotency
from tillpay.kit.db import lock_row, utcnow
from tillpay.kit.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import ProviderDeclined, ProviderError, ProviderUnavailable
from tillpay.ledger import service as ledger
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderStatus
from tillpay.payments import state as fsm
from tillpay.payments.models import (
    Payment,
    PaymentAttempt,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
)
from tillpay.payments.providers.base import (
    CreateRequest,
    ProviderAdapter,
    ProviderState,
    RefundState,
    WebhookNotice,
)
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.settings import Settings

log = get_logger(__name__)

STALE_CLAIM = timedelta(minutes=5)
WEBHOOK_MAX_ATTEMPTS = 10


class PaymentNotPossible(Conflict):
    code, title = "order_not_payable", "The order cannot be paid"


class RefundExceedsCaptured(Conflict):
    code, title = "refund_exceeds_captured", "Refund larger than what is refundable"


# ----------------------------------------------------------------------------- helpers


def return_url_allowed(settings: Settings, url: str) -> bool:
    """Exact scheme/host/port match with a configured prefix, and a path under it: no open
    redirects, no userinfo tricks."""
    try:
        candidate = urlsplit(url)
        # .port raises for a non-numeric port ("localhost:3000.evil.example").
        port = candidate.port
    except ValueError:
        return False
    if candidate.scheme not in ("http", "https") or candidate.username or candidate.password:
        return False
    for allowed in settings.payment_return_urls:
        prefix = urlsplit(allowed)
        if (candidate.scheme, candidate.hostname, port) == (
            prefix.scheme,
            prefix.hostname,
            prefix.port,
        ) and candidate.path.startswith(prefix.path or "/"):
            return True
    return False


def schedule_next_check(settings: Settings, attempt: PaymentAttempt, now: datetime) -> None:
    """Set when the janitor looks at an open attempt again (the last delay repeats)."""
    if attempt.status not in fsm.OPEN:
        attempt.next_check_at = None
        return
    plan = (
        settings.janitor_unknown_schedule
        if attempt.status is PaymentStatus.UNKNOWN
        else settings.janitor_pending_schedule
    )
    delay = plan[min(attempt.check_count, len(plan) - 1)] if plan else 3600
    attempt.next_check_at = now + timedelta(seconds=delay)


def _adapter(rt: PaymentsRuntime, name: str) -> ProviderAdapter:
    adapter = rt.providers.get(name)
    if adapter is None:
        raise Unprocessable(f"The provider {name!r} is not enabled.", code="provider_unavailable")
    return adapter


async def _locked(session: AsyncSession, payment_id: str) -> tuple[Order, Payment]:
    """Lock the order, then the payment (the module's one lock order)."""
    order_id = (
        await session.execute(select(Payment.order_id).where(Payment.id == payment_id))
    ).scalar_one_or_none()
    if order_id is None:
        raise NotFound("No such payment.")
    order = await orders.lock_order(session, order_id)
    payment = await lock_row(session, Payment, payment_id)
    assert order is not None
    return order, payment


async def _lock_attempt(session: AsyncSession, attempt_id: str) -> PaymentAttempt:
    return await lock_row(session, PaymentAttempt, attempt_id)


def _vendor_shares(order: Order) -> dict[str | None, int]:
    shares: dict[str | None, int] = defaultdict(int)
    for line in order.lines:
        shares[line.vendor_id] += line.line_total_amount
    return dict(shares)


# ----------------------------------------------------------------------------- apply state


async def apply_provider_state(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    payment: Payment,
    attempt: PaymentAttempt,
    state: ProviderState,
    *,
    confirmed: bool,
    source: str,
) -> None:
    """Move an attempt (and its payment and order) to what the provider reports.

    ``confirmed`` means the state was read from the provider's API (not only claimed by a
    webhook or a browser). Terminal states never regress; a late success is accepted only
    when confirmed, and is flagged for review. A success whose amount, currency or
    reference does not match is never applied: the payment is flagged and audited. A state
    the adapter marks ``needs_review`` flags the payment too, and is never applied as a success.
    """
    now = utcnow()
    attempt.summary = {**attempt.summary, source: dict(state.summary)}
    if state.provider_object_id and not attempt.provider_object_id:
        attempt.provider_object_id = state.provider_object_id
    # What the payer needs next (an attempt resolved by the janitor learns it late).
    if state.redirect_url:
        attempt.redirect_url = state.redirect_url
    if state.client_data:
        attempt.client_data = dict(state.client_data)
    attempt.provider_status = state.provider_status
    if state.needs_review is not None:
        await _flag(session, payment, state.needs_review, source=source)
        if state.status is PaymentStatus.SUCCEEDED:
            # Money moved, but not as asked (e.g. overpaid): a person decides, so the
            # attempt stays open and nothing is fulfilled; the janitor keeps watching.
            schedule_next_check(settings, attempt, now)
            return
    target = state.status
    current = attempt.status
    if target is current:
        schedule_next_check(settings, attempt, now)
        return
    if not fsm.can_move(current, target, confirmed_by_provider=confirmed):
        log.info(
            "payments.stale_state_ignored",
            attempt_id=attempt.id,
            current=current.value,
            reported=target.value,
            source=source,
        )
        return
    if target is PaymentStatus.SUCCEEDED:
        mismatch = _mismatch(payment, attempt, state)
        if mismatch is not None:
            await _flag(session, payment, mismatch, source=source)
            schedule_next_check(settings, attempt, now)
            return
        if not confirmed:
            # A success we could not confirm with the provider: try again later.
            schedule_next_check(settings, attempt, now)
            return
    attempt.status = target
    attempt.error_code = state.decline_code if target is PaymentStatus.FAILED else None
    schedule_next_check(settings, attempt, now)
    await _sync_payment(session, settings, order, payment, attempt, current, source=source)


def _mismatch(payment: Payment, attempt: PaymentAttempt, state: ProviderState) -> str | None:
    if state.amount != payment.amount:
        return "amount_mismatch"
    if (state.currency or "").upper() != payment.currency:
        return "currency_mismatch"
    if state.reference is not None and state.reference != attempt.reference:
        return "reference_mismatch"
    return None


async def _flag(session: AsyncSession, payment: Payment, reason: str, *, source: str) -> None:
    if payment.needs_review and payment.review_reason == reason:
        return
    payment.needs_review = True
    payment.review_reason = reason
    await record(
        session,
        Actor.system(),
        "payment.review_flagged",
        outcome="flagged",
        target_type="payment",
        target_id=payment.id,
        details={"reason": reason, "source": source},
    )
    await emit(
        session,
        "payment.needs_review",
        subject_type="payment",
        subject_id=payment.id,
        data={"payment_id": payment.id, "order_id": payment.order_id, "reason": reason},
    )
    log.warning("payments.review_flagged", payment_id=payment.id, reason=reason, source=source)


async def _sync_payment(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    payment: Payment,
    attempt: PaymentAttempt,
    previous: PaymentStatus,
    *,
    source: str,
) -> None:
    """Carry the attempt's new status to the payment, order, ledger, outbox and audit."""
    before = payment.status
    payment.status = attempt.status
    data = {
        "payment_id": payment.id,
        "order_id": order.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
    }
    await record(
        session,
        Actor.system(),
        "payment.status_changed",
        target_type="payment",
        target_id=payment.id,
        details={"from": before.value, "to": payment.status.value, "source": source},
    )
    if payment.status is PaymentStatus.SUCCEEDED:
        payment.amount_captured = payment.amount
        if previous in fsm.FAILED_FINAL:
            await _flag(session, payment, "late_success", source=source)
        await emit(
            session, "payment.succeeded", subject_type="payment", subject_id=payment.id, data=data
        )
        if order.status is OrderStatus.PENDING_PAYMENT:
            payment.applied = True
            await orders.transition(
                session,
                order,
                OrderStatus.PAID,
                actor=Actor.system(),
                reason="payment_succeeded",
                data={"payment_id": payment.id},
            )
            await orders.commit_reservations(session, order.id)
            await ledger.post(
                session,
                kind="payment",
                reference_type="payment",
                reference_id=payment.id,
                lines=[
                    ledger.clearing(payment.provider, payment.currency, payment.amount),
                    *[
                        ledger.vendor_payable(vendor, payment.currency, -amount)
                        for vendor, amount in sorted(
                            _vendor_shares(order).items(), key=lambda kv: kv[0] or ""
                        )
                    ],
                ],
            )
        else:
            # Money moved for an order that can no longer take it (expired, cancelled,
            # already paid by another payment): the payment stays captured but unapplied
            # (refundable), held in suspense for an operator.
            await ledger.post(
                session,
                kind="payment",
                reference_type="payment",
                reference_id=payment.id,
                lines=[
                    ledger.clearing(payment.provider, payment.currency, payment.amount),
                    ledger.unapplied(payment.currency, -payment.amount),
                ],
            )
            paid = order.status not in (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
            reason = "order_already_paid" if paid else "order_not_payable"
            await _flag(session, payment, reason, source=source)
    elif payment.status in fsm.FINAL:
        await emit(
            session,
            f"payment.{payment.status.value}",
            subject_type="payment",
            subject_id=payment.id,
            data={**data, "decline_code": attempt.error_code},
        )


# ----------------------------------------------------------------------------- create


@dataclass
class Answer:
    status_code: int
    body: Any
    replayed: bool = False


Render = Callable[[Payment], dict[str, Any]]


@dataclass
class _Started:
    """What a create request committed before calling the provider."""

    record_id: str
    payment_id: str
    attempt_id: str
    request: CreateRequest
    object_id: str | None = None
    resumed: bool = False


@dataclass
class _Outcome:
    status_code: int
    state: ProviderState | None = None
    error_code: str | None = None


async def create_payment(
    rt: PaymentsRuntime,
    principal: Principal,
    *,
    order_id: str,
    provider: str,
    return_url: str | None,
    key: str,
    render: Render,
) -> Answer:
    """Create a payment and its first attempt at ``provider``; see the module docstring.

    A retry whose first try died during the provider call (a stale claim) resumes the
    same payment and attempt: same reference, so never a second provider object."""
    settings = rt.settings
    if return_url is not None and not return_url_allowed(settings, return_url):
        raise Unprocessable("return_url is not an allowed shop URL.", code="return_url_not_allowed")
    adapter = _adapter(rt, provider)
    operation = f"POST /v1/orders/{order_id}/payments"
    async with rt.database.session() as session, session.begin():
        claim = await idempotency.claim(
            session,
            scope=principal.user_id,
            key=key,
            operation=operation,
            payload={"provider": provider, "return_url": return_url},
            stale_after=STALE_CLAIM,
        )
        if claim.replay is not None:
            return Answer(claim.stored_status, claim.stored_body, replayed=True)
        if claim.resumed:
            started = await _resume_payment(session, settings, claim, render)
        else:
            started = await _start_payment(
                session, settings, principal, claim, adapter, order_id, provider, return_url, render
            )
        if isinstance(started, Answer):
            return started

    if started.resumed:
        outcome = await _call_resume(adapter, started)
    else:
        outcome = await _call_create(adapter, started)
    return await _finish_payment(rt, started, outcome, render)


async def _start_payment(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    claim: idempotency.Claim,
    adapter: ProviderAdapter,
    order_id: str,
    provider: str,
    return_url: str | None,
    render: Render,
) -> _Started | Answer:
    order = await orders.lock_order(session, order_id)
    if order is None or order.customer_id != principal.user_id:
        raise NotFound("No such order.")
    if order.status is not OrderStatus.PENDING_PAYMENT:
        raise PaymentNotPossible(f"The order is {order.status.value}.")
    if order.expires_at <= utcnow():
        raise PaymentNotPossible("The order's payment window has passed.")
    if not adapter.supports(order.currency, order.total_amount):
        raise Unprocessable(
            f"{provider} does not accept this amount in {order.currency}.",
            code="currency_not_supported",
        )
    open_payment = (
        (
            await session.execute(
                select(Payment).where(Payment.order_id == order.id, Payment.status.in_(fsm.OPEN))
            )
        )
        .scalars()
        .first()
    )
    if open_payment is not None:
        if open_payment.provider != provider:
            raise Conflict(
                "This order has a payment in progress with another provider.",
                code="payment_in_progress",
                extra={"payment_id": open_payment.id},
            )
        body = render(open_payment)
        idempotency.complete(claim, status=200, body=body)
        return Answer(200, body)
    payment = Payment(
        order_id=order.id,
        customer_id=principal.user_id,
        provider=provider,
        status=PaymentStatus.UNKNOWN,
        amount=order.total_amount,
        currency=order.currency,
        return_url=return_url,
        attempt_count=1,
    )
    session.add(payment)
    await session.flush()
    attempt = PaymentAttempt(
        payment_id=payment.id,
        attempt_no=1,
        provider=provider,
        reference=f"{payment.id}_1",
        status=PaymentStatus.UNKNOWN,
        check_count=0,
    )
    # If we crash during the provider call, the janitor picks the attempt up, and a retry
    # with the same key resumes this payment (the claim remembers it).
    schedule_next_check(settings, attempt, utcnow())
    session.add(attempt)
    await session.flush()
    idempotency.remember(claim, "payment", payment.id)
    await record(
        session,
        principal.actor(),
        "payment.created",
        target_type="payment",
        target_id=payment.id,
        details={"provider": provider, "order_id": order.id},
    )
    return _Started(
        claim.record.id,
        payment.id,
        attempt.id,
        await _create_request(session, settings, order, payment, attempt),
    )


async def _create_request(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    payment: Payment,
    attempt: PaymentAttempt,
) -> CreateRequest:
    """What the provider is asked to create for ``attempt`` (the same on every retry)."""
    return CreateRequest(
        reference=attempt.reference,
        payment_id=payment.id,
        order_id=order.id,
        amount=payment.amount,
        currency=payment.currency,
        # Some providers require the payer's email (Paystack); the others ignore it.
        customer_email=(
            await session.execute(select(User.email).where(User.id == order.customer_id))
        ).scalar_one_or_none(),
        return_url=f"{settings.public_base_url}/v1/payments/{payment.id}/return",
        description=f"Order {order.id}",
    )


async def _resume_payment(
    session: AsyncSession, settings: Settings, claim: idempotency.Claim, render: Render
) -> _Started | Answer:
    """The payment a stale claim created: its state when the provider's outcome is known
    already (the janitor or a webhook got there first), else its open attempt to re-drive."""
    assert claim.resource_id is not None
    order, payment = await _locked(session, claim.resource_id)
    attempt = await _lock_attempt(session, payment.attempts[-1].id)
    if attempt.status not in fsm.OPEN or attempt.redirect_url or attempt.client_data:
        body = render(payment)
        idempotency.complete(claim, status=201, body=body)
        return Answer(201, body)
    return _Started(
        claim.record.id,
        payment.id,
        attempt.id,
        await _create_request(session, settings, order, payment, attempt),
        object_id=attempt.provider_object_id,
        resumed=True,
    )


async def _call_create(adapter: ProviderAdapter, started: _Started) -> _Outcome:
    try:
        return _Outcome(201, await adapter.create_attempt(started.request))
    except ProviderDeclined as exc:
        return _Outcome(402, error_code=exc.code)
    except ProviderError as exc:
        return _Outcome(502, error_code=exc.code)
    except ProviderUnavailable:
        return _Outcome(503)
    except Exception:
        # An adapter bug must not lose the attempt: it stays unknown for the janitor.
        log.exception("payments.create_attempt_crashed", payment_id=started.payment_id)
        return _Outcome(503)


async def _call_resume(adapter: ProviderAdapter, started: _Started) -> _Outcome:
    """Ask the provider what became of the attempt; only when it has never heard of it is
    the create sent again, with the same reference (so at most one provider object)."""
    try:
        state = await adapter.retrieve(
            reference=started.request.reference, provider_object_id=started.object_id
        )
    except ProviderError as exc:
        if exc.code != "not_found":
            return _Outcome(503)
    except ProviderUnavailable:
        return _Outcome(503)
    except Exception:
        log.exception("payments.resume_crashed", payment_id=started.payment_id)
        return _Outcome(503)
    else:
        return _Outcome(201, state)
    return await _call_create(adapter, started)


async def _finish_payment(
    rt: PaymentsRuntime, started: _Started, outcome: _Outcome, render: Render
) -> Answer:
    settings = rt.settings
    async with rt.database.session() as session, session.begin():
        order, payment = await _locked(session, started.payment_id)
        attempt = await _lock_attempt(session, started.attempt_id)
        provider_state = outcome.state
        if provider_state is not None:
            # A re-read may omit what the create returned; never erase it.
            attempt.redirect_url = provider_state.redirect_url or attempt.redirect_url
            attempt.client_data = dict(provider_state.client_data) or attempt.client_data
            await apply_provider_state(
                session,
                settings,
                order,
                payment,
                attempt,
                provider_state,
                confirmed=True,
                source="create",
            )
        elif outcome.error_code is not None and attempt.status in fsm.OPEN:
            attempt.status = PaymentStatus.FAILED
            attempt.error_code = outcome.error_code
            schedule_next_check(settings, attempt, utcnow())
            await _sync_payment(
                session, settings, order, payment, attempt, PaymentStatus.UNKNOWN, source="create"
            )
        else:
            attempt.summary = {**attempt.summary, "create": {"outcome": "unknown"}}
        await session.refresh(payment, ["attempts"])
        body = render(payment)
        await idempotency.complete_by_id(
            session, started.record_id, status=outcome.status_code, body=body
        )
    return Answer(outcome.status_code, body)


# ----------------------------------------------------------------------------- reads


async def get_payment(session: AsyncSession, principal: Principal, payment_id: str) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None or not (
        payment.customer_id == principal.user_id or principal.can(Permission.ORDERS_READ_ANY)
    ):
        raise NotFound("No such payment.")
    return payment


async def order_payments(
    session: AsyncSession, principal: Principal, order_id: str
) -> list[Payment]:
    await orders.get_order(session, principal, order_id)
    rows = await session.execute(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at, Payment.id)
    )
    return list(rows.scalars())


# ----------------------------------------------------------------------------- sync


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
    async with rt.database.session() as session, session.begin():
        order, payment = await _locked(session, payment_id)
        attempt = await _lock_attempt(session, attempt_id)
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
            await _sync_payment(
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


async def janitor_pass(rt: PaymentsRuntime, *, now: datetime | None = None, limit: int = 50) -> int:
    """Re-poll open attempts and refunds whose next check is due. Never touches a final
    state: the apply function refuses to move one."""
    moment = now or utcnow()
    async with rt.database.session() as session:
        attempt_ids = (
            (
                await session.execute(
                    select(PaymentAttempt.id)
                    .where(
                        PaymentAttempt.status.in_(fsm.OPEN),
                        PaymentAttempt.next_check_at.is_not(None),
                        PaymentAttempt.next_check_at <= moment,
                    )
                    .order_by(PaymentAttempt.next_check_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        refund_ids = (
            (
                await session.execute(
                    select(Refund.id)
                    .where(
                        Refund.status.in_((RefundStatus.PENDING, RefundStatus.UNKNOWN)),
                        Refund.next_check_at.is_not(None),
                        Refund.next_check_at <= moment,
                    )
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    for attempt_id in attempt_ids:
        await sync_attempt(rt, attempt_id, source="janitor")
    for refund_id in refund_ids:
        await sync_refund(rt, refund_id)
    return len(attempt_ids) + len(refund_ids)


# ----------------------------------------------------------------------------- refunds


def _may_refund(principal: Principal, settings: Settings, order: Order) -> bool:
    own_lines = (
        settings.vendor_refunds_enabled
        and Permission.ORDERS_READ_VENDOR in principal.permissions
        and bool(order.lines)
        and all(line.vendor_id == principal.user_id for line in order.lines)
    )
    # The admin power last: an admin without 2FA is refused (403) only where it is needed.
    return own_lines or principal.can(Permission.REFUNDS_CREATE)


@dataclass
class _RefundCall:
    """A refund committed (reserved) before its provider call."""

    record_id: str
    refund_id: str
    payment_id: str
    provider: str
    object_id: str
    reference: str
    amount: int
    currency: str
    reason: str
    provider_refund_id: str | None = None
    resumed: bool = False


RefundRender = Callable[[Refund], dict[str, Any]]


def _refund_status_code(refund: Refund) -> int:
    return {RefundStatus.FAILED: 502, RefundStatus.UNKNOWN: 503}.get(refund.status, 201)


async def create_refund(
    rt: PaymentsRuntime,
    principal: Principal,
    *,
    payment_id: str,
    amount: int | None,
    reason: str,
    key: str,
    render: RefundRender,
) -> Answer:
    """Reserve under the payment lock, call the provider, finalise. The sum of pending and
    succeeded refunds can never exceed the captured amount (lock + CHECK constraint).

    A retry whose first try died during the provider call (a stale claim) resumes the
    same Refund: the provider sees the same idempotency key (the Refund id) again."""
    async with rt.database.session() as session, session.begin():
        claim = await idempotency.claim(
            session,
            scope=principal.user_id,
            key=key,
            operation=f"POST /v1/payments/{payment_id}/refunds",
            payload={"amount": amount, "reason": reason},
            stale_after=STALE_CLAIM,
        )
        if claim.replay is not None:
            return Answer(claim.stored_status, claim.stored_body, replayed=True)
        if claim.resumed:
            call = await _resume_refund(session, claim, render)
        else:
            call = await _reserve_refund(
                session, rt.settings, principal, claim, payment_id, amount, reason
            )
        if isinstance(call, Answer):
            return call

    adapter = _adapter(rt, call.provider)
    refund_state: RefundState | None = None
    failure: str | None = None
    try:
        if call.provider_refund_id is None:
            # On a resume this replays the create: same key, so the provider returns the
            # refund it already made instead of making another.
            refund_state = await adapter.refund(
                refund_id=call.refund_id,
                provider_object_id=call.object_id,
                reference=call.reference,
                amount=call.amount,
                currency=call.currency,
                reason=call.reason,
            )
        else:
            refund_state = await adapter.retrieve_refund(
                refund_id=call.refund_id,
                provider_refund_id=call.provider_refund_id,
                provider_object_id=call.object_id,
            )
    except ProviderError as exc:
        # A resumed refund may have happened on the first try: only a fresh create's
        # refusal proves nothing moved (the janitor reads it later otherwise).
        failure = None if call.resumed else exc.code
    except ProviderUnavailable:
        pass

    async with rt.database.session() as session, session.begin():
        order, payment = await _locked(session, call.payment_id)
        refund = await _lock_refund(session, call.refund_id)
        if refund_state is not None:
            await apply_refund_state(session, order, payment, refund, refund_state, source="create")
        elif failure is not None:
            await apply_refund_state(
                session,
                order,
                payment,
                refund,
                RefundState(RefundStatus.FAILED, None, call.amount, "error", failure_code=failure),
                source="create",
            )
        elif refund.status is RefundStatus.PENDING:
            # Outcome unknown; never over a state the janitor settled meanwhile.
            refund.status = RefundStatus.UNKNOWN
        body = render(refund)
        status_code = _refund_status_code(refund)
        await idempotency.complete_by_id(session, call.record_id, status=status_code, body=body)
    return Answer(status_code, body)


async def _reserve_refund(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    claim: idempotency.Claim,
    payment_id: str,
    amount: int | None,
    reason: str,
) -> _RefundCall:
    order, payment = await _locked(session, payment_id)
    if not _may_refund(principal, settings, order):
        if (
            payment.customer_id == principal.user_id
            or Permission.ORDERS_READ_VENDOR in principal.permissions
        ):
            raise Forbidden("You may not refund this payment.")
        raise NotFound("No such payment.")
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise Conflict("Only succeeded payments can be refunded.", code="payment_not_refundable")
    refundable = payment.amount_captured - payment.amount_refund_reserved
    value = refundable if amount is None else amount
    if value <= 0 or value > refundable:
        raise RefundExceedsCaptured(
            f"At most {refundable} can still be refunded.", extra={"refundable": refundable}
        )
    captured = next(a for a in payment.attempts if a.status is PaymentStatus.SUCCEEDED)
    refund = await _reserve_refund_row(
        session, payment, captured.id, value, reason=reason, created_by=principal.user_id
    )
    # A retry after a crash resumes this Refund instead of reserving a second one.
    idempotency.remember(claim, "refund", refund.id)
    await record(
        session,
        principal.actor(),
        "refund.created",
        target_type="refund",
        target_id=refund.id,
        details={"payment_id": payment.id, "amount": value},
    )
    return _RefundCall(
        record_id=claim.record.id,
        refund_id=refund.id,
        payment_id=payment.id,
        provider=payment.provider,
        object_id=captured.provider_object_id or "",
        reference=captured.reference,
        amount=value,
        currency=payment.currency,
        reason=reason,
    )


async def _resume_refund(
    session: AsyncSession, claim: idempotency.Claim, render: RefundRender
) -> _RefundCall | Answer:
    """The Refund a stale claim reserved: its final state when known (the janitor or a
    webhook got there first), else the same provider call again."""
    assert claim.resource_id is not None
    refund = await session.get(Refund, claim.resource_id)
    assert refund is not None
    _, payment = await _locked(session, refund.payment_id)
    refund = await _lock_refund(session, refund.id)
    if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        body = render(refund)
        status_code = _refund_status_code(refund)
        idempotency.complete(claim, status=status_code, body=body)
        return Answer(status_code, body)
    attempt = await session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    return _RefundCall(
        record_id=claim.record.id,
        refund_id=refund.id,
        payment_id=payment.id,
        provider=payment.provider,
        object_id=attempt.provider_object_id or "",
        reference=attempt.reference,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        provider_refund_id=refund.provider_refund_id,
        resumed=True,
    )


async def _reserve_refund_row(
    session: AsyncSession,
    payment: Payment,
    attempt_id: str,
    amount: int,
    *,
    reason: str,
    created_by: str | None,
    provider_refund_id: str | None = None,
    external: bool = False,
) -> Refund:
    """A pending Refund holding ``amount`` of the payment's refundable room (the caller
    holds the payment lock and has checked the room; the CHECK constraint backs it)."""
    refund = Refund(
        payment_id=payment.id,
        attempt_id=attempt_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        reason=reason,
        provider_refund_id=provider_refund_id,
        external=external,
        created_by=created_by,
        next_check_at=utcnow() + timedelta(minutes=5),
    )
    session.add(refund)
    payment.amount_refund_reserved += amount
    await session.flush()
    return refund


async def _lock_refund(session: AsyncSession, refund_id: str) -> Refund:
    return await lock_row(session, Refund, refund_id)


async def apply_refund_state(
    session: AsyncSession,
    order: Order,
    payment: Payment,
    refund: Refund,
    state: RefundState,
    *,
    source: str,
) -> None:
    """Apply a refund outcome once: success moves money (ledger, order status); failure
    releases the reservation. Final states never change again."""
    if state.provider_refund_id and not refund.provider_refund_id:
        refund.provider_refund_id = state.provider_refund_id
    if state.status is refund.status or not fsm.can_move_refund(refund.status, state.status):
        return
    refund.status = state.status
    data = {
        "refund_id": refund.id,
        "payment_id": payment.id,
        "amount": refund.amount,
        "currency": refund.currency,
    }
    if state.status is RefundStatus.SUCCEEDED:
        refund.next_check_at = None
        payment.amount_refunded += refund.amount
        await ledger.post(
            session,
            kind="refund",
            reference_type="refund",
            reference_id=refund.id,
            lines=await _refund_lines(session, payment, refund.amount),
        )
        if payment.applied:
            # Only the payment that paid the order refunds it; an unapplied capture's
            # refund gives back money the order never received.
            order.refunded_amount = payment.amount_refunded
            target = (
                OrderStatus.REFUNDED
                if payment.amount_refunded >= payment.amount_captured
                else OrderStatus.PARTIALLY_REFUNDED
            )
            if order.status in (
                OrderStatus.PAID,
                OrderStatus.FULFILLED,
                OrderStatus.PARTIALLY_REFUNDED,
            ):
                await orders.transition(
                    session, order, target, actor=Actor.system(), reason="refund_succeeded"
                )
        await emit(
            session, "refund.succeeded", subject_type="refund", subject_id=refund.id, data=data
        )
    elif state.status is RefundStatus.FAILED:
        refund.next_check_at = None
        refund.error_code = state.failure_code
        payment.amount_refund_reserved -= refund.amount
        await emit(session, "refund.failed", subject_type="refund", subject_id=refund.id, data=data)
    else:
        refund.next_check_at = utcnow() + timedelta(minutes=5 * (refund.check_count + 1))
    await record(
        session,
        Actor.system(),
        "refund.status_changed",
        target_type="refund",
        target_id=refund.id,
        details={"to": refund.status.value, "source": source},
    )


async def _refund_lines(session: AsyncSession, payment: Payment, amount: int) -> list[ledger.Line]:
    """Reverse ``amount`` of what the payment's capture posted, account by account, over
    what the earlier refunds left: vendors (or ``unapplied_payments``) give back only what
    they still hold, and a full refund brings every account of the capture back to zero."""
    capture = await ledger.posted(session, kind="payment", reference_ids=[payment.id])
    refunds = select(Refund.id).where(Refund.payment_id == payment.id)
    earlier = await ledger.posted(session, kind="refund", reference_ids=refunds)
    return ledger.reversal(capture, {line.account: line.amount for line in earlier}, amount)


async def sync_refund(rt: PaymentsRuntime, refund_id: str) -> None:
    async with rt.database.session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            return
        attempt = await session.get(PaymentAttempt, refund.attempt_id)
        assert attempt is not None
        provider, object_id = attempt.provider, attempt.provider_object_id or ""
        payment_id, provider_refund_id, amount = (
            refund.payment_id,
            refund.provider_refund_id,
            refund.amount,
        )
        reference, currency, reason = attempt.reference, refund.currency, refund.reason
    adapter = rt.providers.get(provider)
    if adapter is None:
        return
    state: RefundState | None = None
    try:
        if provider_refund_id is None:
            # Replaying the create with the same idempotency key returns the original.
            state = await adapter.refund(
                refund_id=refund_id,
                provider_object_id=object_id,
                reference=reference,
                amount=amount,
                currency=currency,
                reason=reason,
            )
        else:
            state = await adapter.retrieve_refund(
                refund_id=refund_id,
                provider_refund_id=provider_refund_id,
                provider_object_id=object_id,
            )
    except (ProviderError, ProviderUnavailable):
        state = None
    async with rt.database.session() as session, session.begin():
        order, payment = await _locked(session, payment_id)
        refund = await _lock_refund(session, refund_id)
        refund.check_count += 1
        if state is not None:
            await apply_refund_state(session, order, payment, refund, state, source="janitor")
        else:
            refund.next_check_at = utcnow() + timedelta(minutes=5 * refund.check_count)


async def list_refunds(
    session: AsyncSession, principal: Principal, payment_id: str
) -> list[Refund]:
    await get_payment(session, principal, payment_id)
    rows = await session.execute(
        select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.created_at, Refund.id)
    )
    return list(rows.scalars())


# ----------------------------------------------------------------------------- webhooks


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
    from sqlalchemy.exc import IntegrityError

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


class RetryLater(AppError):
    """The event is ahead of our state or the provider is unreachable: try again later."""


async def process_webhook(rt: PaymentsRuntime, event_id: str) -> str:
    """Process one stored event: re-read the provider, then apply under the locks.
    Returns ``processed``, ``retry`` or ``dead``."""
    async with rt.database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        if event is None or event.status != "pending":
            return "processed"
        provider, payload = event.provider, event.payload.encode()
    adapter = rt.providers.get(provider)
    try:
        if adapter is None:
            raise RetryLater("provider disabled")
        notice = adapter.parse_webhook(payload, {})
        if notice is None:
            return await _finish_event(rt, event_id, status="processed")
        if notice.kind == "payment":
            await _process_payment_notice(rt, adapter, notice, event_id)
        else:
            await _process_refund_notice(rt, adapter, notice, event_id)
        return "processed"
    except RetryLater as exc:
        return await _finish_event(rt, event_id, status="retry", error=exc.detail)
    except Exception as exc:
        log.exception("payments.webhook_processing_failed", event_id=event_id)
        return await _finish_event(rt, event_id, status="retry", error=type(exc).__name__)


async def _finish_event(
    rt: PaymentsRuntime, event_id: str, *, status: str, error: str | None = None
) -> str:
    async with rt.database.session() as session, session.begin():
        event = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
            )
        ).scalar_one()
        if event.status != "pending":
            return event.status
        if status == "processed":
            event.status = "processed"
            event.processed_at = utcnow()
            return "processed"
        event.attempts += 1
        event.last_error = (error or "")[:255]
        if event.attempts >= WEBHOOK_MAX_ATTEMPTS:
            event.status = "dead"
            log.error("payments.webhook_dead", event_id=event.id, provider=event.provider)
            return "dead"
        event.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 2**event.attempts))
        return "retry"


async def _lock_pending_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """Lock a stored event; None once another worker has handled it."""
    event = (
        await session.execute(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        )
    ).scalar_one()
    return event if event.status == "pending" else None


def _mark_processed(event: WebhookEvent) -> None:
    event.status = "processed"
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
    async with rt.database.session() as session, session.begin():
        event = await _lock_pending_event(session, event_id)
        if event is None:
            return
        order, payment = await _locked(session, payment_id)
        attempt = await _lock_attempt(session, attempt_id)
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
    async with rt.database.session() as session, session.begin():
        event = await _lock_pending_event(session, event_id)
        if event is None:
            return
        order, payment = await _locked(session, payment_id)
        for state in states:
            # Matched again under the payment lock: every refund writer holds it.
            matched = await _match_refund(session, payment, state)
            if matched is None:
                matched = await _record_external_refund(session, payment, attempt_id, state)
            if matched is not None:
                refund = await _lock_refund(session, matched.id)
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


async def _match_refund(
    session: AsyncSession, payment: Payment, state: RefundState
) -> Refund | None:
    """The payment's refund this provider refund is: by provider refund id, else by the
    tillpay refund id the provider carries (our refund's answer may not be stored yet)."""
    if state.provider_refund_id:
        found = (
            (
                await session.execute(
                    select(Refund)
                    .where(
                        Refund.payment_id == payment.id,
                        Refund.provider_refund_id == state.provider_refund_id,
                    )
                    .order_by(Refund.created_at.desc(), Refund.id.desc())
                )
            )
            .scalars()
            .first()
        )
        if found is not None:
            return found
    if state.tillpay_refund_id:
        own = await session.get(Refund, state.tillpay_refund_id)
        if (
            own is not None
            and own.payment_id == payment.id
            and own.provider_refund_id in (None, state.provider_refund_id)
        ):
            return own
    return None


async def _record_external_refund(
    session: AsyncSession, payment: Payment, attempt_id: str, state: RefundState
) -> Refund | None:
    """A refund made outside tillpay (the provider's dashboard), confirmed by the provider's
    API: reserve it under the payment lock like any refund, or flag what cannot be booked.
    None when there is nothing to apply."""
    if state.status is RefundStatus.FAILED:
        return None  # no money moved
    if state.tillpay_refund_id:
        # The provider says tillpay made it, but no refund of this payment is that one.
        await _flag(session, payment, "refund_unmatched", source="webhook")
        return None
    unresolved = (
        await session.execute(
            select(Refund.id).where(
                Refund.payment_id == payment.id,
                Refund.status.in_((RefundStatus.PENDING, RefundStatus.UNKNOWN)),
                Refund.provider_refund_id.is_(None),
            )
        )
    ).first()
    if unresolved is not None:
        # One of our own refunds has no provider id yet: it may be this one.
        raise RetryLater("an own refund is still unresolved")
    amount = state.amount
    if amount is None or amount <= 0:
        await _flag(session, payment, "refund_unmatched", source="webhook")
        return None
    if amount > payment.amount_captured - payment.amount_refund_reserved:
        if amount <= payment.amount_captured - payment.amount_refunded:
            raise RetryLater("own refunds still pending")  # they may fail and free room
        # More than was ever left to refund: a person decides; nothing is posted.
        await _flag(session, payment, "external_refund_exceeds_refundable", source="webhook")
        await record(
            session,
            Actor.system(),
            "refund.external_refused",
            outcome="flagged",
            target_type="payment",
            target_id=payment.id,
            details={
                "provider_refund_id": state.provider_refund_id,
                "amount": amount,
                "refundable": payment.amount_captured - payment.amount_refund_reserved,
            },
        )
        return None
    refund = await _reserve_refund_row(
        session,
        payment,
        attempt_id,
        amount,
        reason="provider_initiated",
        created_by=None,
        provider_refund_id=state.provider_refund_id,
        external=True,
    )
    await record(
        session,
        Actor.system(),
        "refund.external_recorded",
        target_type="refund",
        target_id=refund.id,
        details={
            "payment_id": payment.id,
            "amount": amount,
            "provider_refund_id": state.provider_refund_id,
        },
    )
    log.warning("payments.external_refund", payment_id=payment.id, refund_id=refund.id)
    return refund


async def process_due_webhooks(rt: PaymentsRuntime, *, limit: int = 20) -> int:
    async with rt.database.session() as session:
        ids = (
            (
                await session.execute(
                    select(WebhookEvent.id)
                    .where(
                        WebhookEvent.status == "pending", WebhookEvent.next_attempt_at <= utcnow()
                    )
                    .order_by(WebhookEvent.received_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    for event_id in ids:
        await process_webhook(rt, event_id)
    return len(ids)


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
    if event.status != "dead":
        raise Conflict("Only dead events can be replayed.", code="event_not_dead")
    event.status = "pending"
    event.attempts = 0
    event.next_attempt_at = utcnow()
    await record(
        session,
        principal.actor(),
        "admin.webhook_replayed",
        target_type="webhook_event",
        target_id=event.id,
    )
    return event
