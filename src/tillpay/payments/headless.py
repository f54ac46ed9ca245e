"""Headless payments: a shop backend pays its own order through tillpay.

A headless payment is an :class:`Order` of kind ``headless`` (no lines, no tillpay
customer, the credential's ``merchant`` and the shop's ``reference``, unique per merchant
in the database) with an ordinary :class:`Payment`, so provider calls, webhooks, the
janitor, review flags, refunds, ledger and outbox are the order payments' own pipeline."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.kit import idempotency
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from tillpay.kit.idempotency import Answer, IdempotentRequest
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderKind, OrderStatus
from tillpay.payments import create
from tillpay.payments import state as fsm
from tillpay.payments.apply import lock_attempt, lock_payment, schedule_next_check
from tillpay.payments.apply import sync_payment_status as carry_status
from tillpay.payments.headless_schemas import HeadlessPaymentCreate, HeadlessPaymentOut
from tillpay.payments.models import Payment, PaymentStatus
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.settings import Settings

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class MachineCredentialRequired(Forbidden):
    code, title = "machine_credential_required", "A shop credential is required"

    def __init__(self) -> None:
        super().__init__(
            "Headless payments are created by a shop backend's API key or service token "
            "(one that names a merchant), not by a signed-in person."
        )


class ReferenceInUse(Conflict):
    code, title = "reference_in_use", "Reference already used"

    def __init__(self) -> None:
        super().__init__("This merchant already has a payment with this reference.")


def return_url_valid(settings: Settings, url: str) -> bool:
    """https, or http on a loopback host outside production; no userinfo, valid port."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a non-numeric port
    except ValueError:
        return False
    if parts.username or parts.password or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and not settings.is_production and parts.hostname in _LOCAL_HOSTS


def _merchant(principal: Principal) -> str:
    if not principal.is_machine or principal.merchant is None:
        raise MachineCredentialRequired()
    return principal.merchant


async def create_headless_payment(
    rt: PaymentsRuntime,
    principal: Principal,
    request: IdempotentRequest,
    body: HeadlessPaymentCreate,
) -> Answer:
    """Create the shop's order and its payment at ``body.provider`` (idempotent on the key;
    the reference is unique per merchant: 409 ``reference_in_use`` for another key)."""
    merchant = _merchant(principal)
    settings = rt.settings
    if body.return_url is not None and not return_url_valid(settings, body.return_url):
        raise Unprocessable(
            "return_url must be https (http only on localhost outside production).",
            code="return_url_not_allowed",
        )
    adapter = rt.adapter(body.provider)
    if not adapter.supports(body.currency, body.amount):
        raise Unprocessable(
            f"{body.provider} does not accept this amount in {body.currency}.",
            code="currency_not_supported",
        )

    async def start(session: AsyncSession, claim: idempotency.Claim) -> create.Started:
        taken = await session.execute(
            select(Order.id).where(Order.merchant == merchant, Order.reference == body.reference)
        )
        if taken.first() is not None:
            raise ReferenceInUse()
        order = Order(
            kind=OrderKind.HEADLESS,
            customer_id=None,
            merchant=merchant,
            reference=body.reference,
            customer_email=str(body.customer.email),
            customer_external_id=body.customer.external_id,
            description=body.description,
            metadata_=dict(body.metadata),
            status=OrderStatus.PENDING_PAYMENT,
            currency=body.currency,
            subtotal_amount=body.amount,
            total_amount=body.amount,
            expires_at=utcnow() + timedelta(seconds=settings.reservation_ttl_seconds),
        )
        session.add(order)
        try:
            # A concurrent create of the same reference (another key) waits here for the
            # first one's commit and then fails the unique constraint.
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise ReferenceInUse() from None
        return await create.start_attempt(
            session,
            settings,
            principal,
            claim,
            order,
            body.provider,
            body.return_url,
            customer_id=None,
        )

    return await create.run(rt, request, adapter, start)


def _visible(principal: Principal, order: Order) -> bool:
    """A machine sees its own merchant's headless payments; a person with
    ``payments:read`` (an administrator with 2FA) every one."""
    if order.kind is not OrderKind.HEADLESS:
        return False
    if principal.is_machine:
        return order.merchant is not None and order.merchant == principal.merchant
    return principal.can(Permission.PAYMENTS_READ)


async def get_headless_payment(
    session: AsyncSession, principal: Principal, payment_id: str
) -> HeadlessPaymentOut:
    row = (
        await session.execute(
            select(Order, Payment)
            .join(Payment, Payment.order_id == Order.id)
            .where(Payment.id == payment_id)
        )
    ).one_or_none()
    if row is None or not _visible(principal, row[0]):
        raise NotFound("No such payment.")
    return HeadlessPaymentOut.of(row[0], row[1])


async def list_headless_payments(
    session: AsyncSession,
    principal: Principal,
    *,
    reference: str | None,
    after: str | None,
    limit: int,
) -> list[HeadlessPaymentOut]:
    """Newest first (by payment id), ``limit + 1`` rows so the caller can tell a next page."""
    query = (
        select(Order, Payment)
        .join(Payment, Payment.order_id == Order.id)
        .where(Order.kind == OrderKind.HEADLESS)
        .order_by(Payment.id.desc())
        .limit(limit + 1)
    )
    if principal.is_machine:
        query = query.where(Order.merchant == _merchant(principal))
    elif not principal.can(Permission.PAYMENTS_READ):
        return []
    if reference is not None:
        query = query.where(Order.reference == reference)
    if after is not None:
        query = query.where(Payment.id < after)
    rows = (await session.execute(query)).all()
    return [HeadlessPaymentOut.of(order, payment) for order, payment in rows]


async def cancel_headless_payment(
    session: AsyncSession, settings: Settings, principal: Principal, payment_id: str
) -> HeadlessPaymentOut:
    """Cancel a not yet completed headless payment, locally: no provider adapter has a
    cancel call, so the attempt, payment and order become canceled here; should the payer
    still pay, the late success is applied as captured-but-unapplied and flagged for review
    (``apply_provider_state``). A final payment answers 409 and never moves."""
    merchant = _merchant(principal)
    found = await session.execute(
        select(Payment.id)
        .join(Order, Order.id == Payment.order_id)
        .where(Payment.id == payment_id, Order.merchant == merchant)
    )
    if found.first() is None:
        raise NotFound("No such payment.")
    order, payment = await lock_payment(session, payment_id)
    if payment.status is PaymentStatus.CANCELED:  # a repeated cancel: the same answer
        return HeadlessPaymentOut.of(order, payment)
    if payment.status not in fsm.OPEN:
        raise Conflict(
            f"A {payment.status.value} payment cannot be canceled.",
            code="payment_not_cancelable",
            extra={"payment_status": payment.status.value},
        )
    attempt = await lock_attempt(session, payment.attempts[-1].id)
    previous = attempt.status
    if attempt.status in fsm.OPEN:
        attempt.status = PaymentStatus.CANCELED
        attempt.error_code = "canceled_by_merchant"
        schedule_next_check(settings, attempt, utcnow())
    await carry_status(session, settings, order, payment, attempt, previous, source="cancel")
    if order.status is OrderStatus.PENDING_PAYMENT:
        await orders.transition(
            session, order, OrderStatus.CANCELLED, actor=principal.actor(), reason="merchant_cancel"
        )
    await record(
        session,
        principal.actor(),
        "payment.canceled",
        target_type="payment",
        target_id=payment.id,
        details={"reference": order.reference, "merchant": merchant},
    )
    await session.refresh(payment, ["attempts"])
    return HeadlessPaymentOut.of(order, payment)
