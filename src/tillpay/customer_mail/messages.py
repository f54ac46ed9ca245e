"""What each customer mail says, composed from the objects' current state."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tillpay.accounts.models import Role, User
from tillpay.customer_mail import account_notices, digest
from tillpay.events.models import OutboxEvent
from tillpay.notifications.mail import EmailMessageSpec
from tillpay.notifications.templating import format_amount, render
from tillpay.orders.models import Order
from tillpay.payments.models import Payment, Refund
from tillpay.settings import Settings

#: The events a customer is told about, and the template that tells them.
TEMPLATES = {
    "order.paid": "receipt",
    "payment.failed": "payment_failed",
    "refund.succeeded": "refund_issued",
    "webhook_endpoint.disabled": "endpoint_disabled",
    digest.EVENT_TYPE: "admin_digest",
    **account_notices.TEMPLATES,
}

PROVIDER_LABELS = {
    "sandbox": "the sandbox (test payments)",
    "stripe": "card (Stripe)",
    "paystack": "Paystack",
    "razorpay": "Razorpay",
    "cryptomus": "crypto (Cryptomus)",
}

#: Decline codes said in words; others are shown as they are.
REASONS = {
    "card_declined": "the card was declined",
    "insufficient_funds": "insufficient funds",
    "expired_card": "the card has expired",
}


def shop_name(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[0] or "tillpay"


async def _email_of(session: AsyncSession, user_id: str) -> str | None:
    return await session.scalar(select(User.email).where(User.id == user_id))


async def compose(
    session: AsyncSession, settings: Settings, event: OutboxEvent
) -> list[EmailMessageSpec]:
    """The mail ``event`` calls for: none (nothing to say, nobody to say it to), one to
    the customer, or one to each active administrator."""
    template = TEMPLATES.get(event.type)
    if template is None:
        return []
    if event.type == "webhook_endpoint.disabled":
        details = event.payload.get("data", {})
        subject = f"Webhook endpoint {event.subject_id} was disabled"
        context = {
            "endpoint_id": event.subject_id,
            "url": details.get("url", ""),
            "failing_since": details.get("failing_since") or "a while",
        }
        return await _to_admins(session, settings, event, template, subject, context)
    if event.type == digest.EVENT_TYPE:
        subject, context = digest.mail_context(settings, event)
        return await _to_admins(session, settings, event, template, subject, context)
    if event.type in account_notices.TEMPLATES:
        notice = await account_notices.compose(session, settings, event, shop_name(settings))
        return [] if notice is None else [notice]
    message = await _to_customer(session, settings, event, template)
    return [] if message is None else [message]


async def _to_admins(
    session: AsyncSession,
    settings: Settings,
    event: OutboxEvent,
    template: str,
    subject: str,
    context: dict[str, Any],
) -> list[EmailMessageSpec]:
    """One message to each active administrator."""
    text, html = render(template, subject=subject, shop_name=shop_name(settings), **context)
    admins = (
        await session.execute(
            select(User.email)
            .where(User.role == Role.ADMIN, User.is_active.is_(True))
            .order_by(User.email)
        )
    ).scalars()
    return [
        EmailMessageSpec(
            to=email,
            subject=subject,
            text=text,
            html=html,
            category=template,
            tags={"event": event.id},
        )
        for email in admins
    ]


async def _to_customer(
    session: AsyncSession, settings: Settings, event: OutboxEvent, template: str
) -> EmailMessageSpec | None:
    context: dict[str, Any] = {"shop_name": shop_name(settings)}
    if event.type == "order.paid":
        order = (
            (
                await session.execute(
                    select(Order)
                    .options(joinedload(Order.lines))
                    .where(Order.id == event.subject_id)
                )
            )
            .unique()
            .scalar_one_or_none()
        )
        payment_id = event.payload.get("data", {}).get("payment_id")
        payment = await session.get(Payment, payment_id) if payment_id else None
        if order is None or payment is None:
            return None
        customer_id = order.customer_id
        subject = (
            f"Receipt for order {order.id}: {format_amount(order.total_amount, order.currency)}"
        )
        context |= {
            "order": order,
            "payment": {
                "id": payment.id,
                "provider_label": PROVIDER_LABELS.get(payment.provider, payment.provider),
            },
        }
    elif event.type == "payment.failed":
        payment = await session.get(Payment, event.subject_id)
        if payment is None:
            return None
        customer_id = payment.customer_id
        code = event.payload.get("data", {}).get("decline_code")
        subject = f"Your payment for order {payment.order_id} did not go through"
        context |= {
            "payment": payment,
            "reason": REASONS.get(code, code) if code else None,
            "retry_url": None,
        }
    else:  # refund.succeeded
        refund = await session.get(Refund, event.subject_id)
        payment = await session.get(Payment, refund.payment_id) if refund else None
        if refund is None or payment is None:
            return None
        customer_id = payment.customer_id
        subject = f"Refund of {format_amount(refund.amount, refund.currency)} issued"
        context |= {"refund": refund, "order_id": payment.order_id}
    # A headless payment has no tillpay customer: the shop's backend mails its own payer.
    to = await _email_of(session, customer_id) if customer_id is not None else None
    if to is None:
        return None
    text, html = render(template, subject=subject, **context)
    return EmailMessageSpec(
        to=to,
        subject=subject,
        text=text,
        html=html,
        category=template,
        tags={"event": event.id},
    )
