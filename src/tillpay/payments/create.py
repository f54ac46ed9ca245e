"""Creating a payment and its first attempt: reserve, call the provider, finalise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import User
from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.kit import idempotency
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, NotFound, Unprocessable
from tillpay.kit.idempotency import Answer, IdempotentRequest
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import ProviderDeclined, ProviderError, ProviderUnavailable
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderKind, OrderStatus
from tillpay.payments import state as fsm
from tillpay.payments.apply import (
    apply_provider_state,
    lock_attempt,
    lock_payment,
    schedule_next_check,
    sync_payment_status,
)
from tillpay.payments.errors import PaymentNotPossible
from tillpay.payments.headless_schemas import HeadlessPaymentOut
from tillpay.payments.models import Payment, PaymentAttempt, PaymentStatus
from tillpay.payments.providers.base import CreateRequest, ProviderAdapter, ProviderState
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.payments.schemas import PaymentOut
from tillpay.settings import Settings

log = get_logger(__name__)


def return_url_allowed(settings: Settings, url: str) -> bool:
    """Exact scheme/host/port match with a configured prefix (or, with the demo shop on,
    its own ``/shop/`` pages), and a path under it: no open redirects, no userinfo tricks."""
    try:
        candidate = urlsplit(url)
        # .port raises for a non-numeric port ("localhost:3000.evil.example").
        port = candidate.port
    except ValueError:
        return False
    if candidate.scheme not in ("http", "https") or candidate.username or candidate.password:
        return False
    for allowed in settings.return_url_prefixes:
        prefix = urlsplit(allowed)
        if (candidate.scheme, candidate.hostname, port) == (
            prefix.scheme,
            prefix.hostname,
            prefix.port,
        ) and candidate.path.startswith(prefix.path or "/"):
            return True
    return False


def _body(order: Order, payment: Payment) -> dict[str, Any]:
    """The answer body: an order payment's ``PaymentOut``, a headless payment's own view."""
    if order.kind is OrderKind.HEADLESS:
        return HeadlessPaymentOut.of(order, payment).model_dump(mode="json")
    return PaymentOut.model_validate(payment).model_dump(mode="json")


@dataclass
class _Started:
    """What a create request committed before calling the provider."""

    record_id: str
    payment_id: str
    attempt_id: str
    request: CreateRequest
    object_id: str | None = None
    resumed: bool = False


Started = _Started


@dataclass
class _Outcome:
    status_code: int
    state: ProviderState | None = None
    error_code: str | None = None


async def create_payment(
    rt: PaymentsRuntime,
    principal: Principal,
    request: IdempotentRequest,
    *,
    order_id: str,
    provider: str,
    return_url: str | None,
) -> Answer:
    """Create a payment and its first attempt at ``provider``; see the module docstring.

    A retry whose first try died during the provider call (a stale claim) resumes the
    same payment and attempt: same reference, so never a second provider object."""
    settings = rt.settings
    if return_url is not None and not return_url_allowed(settings, return_url):
        raise Unprocessable("return_url is not an allowed shop URL.", code="return_url_not_allowed")
    adapter = rt.adapter(provider)

    async def start(session: AsyncSession, claim: idempotency.Claim) -> _Started | Answer:
        return await _start_payment(
            session, settings, principal, claim, adapter, order_id, provider, return_url
        )

    return await run(rt, request, adapter, start)


Start = Callable[[AsyncSession, idempotency.Claim], Awaitable["Started | Answer"]]


async def run(
    rt: PaymentsRuntime, request: IdempotentRequest, adapter: ProviderAdapter, start: Start
) -> Answer:
    """The idempotent create flow shared by order and headless payments: claim the key,
    ``start`` (commit payment + attempt) or resume what a stale claim started, call the
    provider outside any transaction, then apply its answer and store it with the key."""
    async with rt.database.transaction() as session:
        claim = await idempotency.begin(session, request, stale_after=idempotency.STALE_CLAIM)
        if claim.answer is not None:
            return claim.answer
        if claim.resumed:
            started = await _resume_payment(session, rt.settings, claim)
        else:
            started = await start(session, claim)
        if isinstance(started, Answer):
            return started

    if started.resumed:
        outcome = await _call_resume(adapter, started)
    else:
        outcome = await _call_create(adapter, started)
    return await _finish_payment(rt, started, outcome)


async def _start_payment(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    claim: idempotency.Claim,
    adapter: ProviderAdapter,
    order_id: str,
    provider: str,
    return_url: str | None,
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
        return idempotency.finish(claim, Answer(200, _body(order, open_payment)))
    return await start_attempt(
        session,
        settings,
        principal,
        claim,
        order,
        provider,
        return_url,
        customer_id=principal.user_id,
    )


async def start_attempt(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    claim: idempotency.Claim,
    order: Order,
    provider: str,
    return_url: str | None,
    *,
    customer_id: str | None,
) -> _Started:
    """The payment and its first attempt for a locked, payable ``order`` (an order
    payment or a headless one), committed before the provider is called."""
    payment = Payment(
        order_id=order.id,
        customer_id=customer_id,
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
    if order.kind is OrderKind.HEADLESS:
        email, description = order.customer_email, order.description or f"Order {order.reference}"
    else:
        # Some providers require the payer's email (Paystack); the others ignore it.
        email = (
            await session.execute(select(User.email).where(User.id == order.customer_id))
        ).scalar_one_or_none()
        description = f"Order {order.id}"
    return CreateRequest(
        reference=attempt.reference,
        payment_id=payment.id,
        order_id=order.id,
        amount=payment.amount,
        currency=payment.currency,
        customer_email=email,
        return_url=f"{settings.public_base_url}/v1/payments/{payment.id}/return",
        description=description,
    )


async def _resume_payment(
    session: AsyncSession, settings: Settings, claim: idempotency.Claim
) -> _Started | Answer:
    """The payment a stale claim created: its state when the provider's outcome is known
    already (the janitor or a webhook got there first), else its open attempt to re-drive."""
    assert claim.resource_id is not None
    order, payment = await lock_payment(session, claim.resource_id)
    attempt = await lock_attempt(session, payment.attempts[-1].id)
    if attempt.status not in fsm.OPEN or attempt.redirect_url or attempt.client_data:
        return idempotency.finish(claim, Answer(201, _body(order, payment)))
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


async def _finish_payment(rt: PaymentsRuntime, started: _Started, outcome: _Outcome) -> Answer:
    settings = rt.settings
    async with rt.database.transaction() as session:
        order, payment = await lock_payment(session, started.payment_id)
        attempt = await lock_attempt(session, started.attempt_id)
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
            await sync_payment_status(
                session, settings, order, payment, attempt, PaymentStatus.UNKNOWN, source="create"
            )
        else:
            attempt.summary = {**attempt.summary, "create": {"outcome": "unknown"}}
        await session.refresh(payment, ["attempts"])
        answer = Answer(outcome.status_code, _body(order, payment))
        return await idempotency.finish_by_id(session, started.record_id, answer)
