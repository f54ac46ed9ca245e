"""The sandbox payment service provider: its rules (this module), its HTTP routes
(:mod:`tillpay.sandbox.routes`) and its hosted page (:mod:`tillpay.sandbox.page`).

It plays the part of a hosted-checkout PSP, served by tillpay but reached by tillpay's
sandbox adapter only over HTTP (``/sandbox/api``), exactly like a real provider:

- ``POST /sandbox/api/sessions`` creates (or, for a repeated ``reference``, returns) a
  checkout session and its hosted page URL;
- ``GET /sandbox/api/sessions/by-reference/{reference}`` reads a session;
- ``POST /sandbox/api/sessions/{id}/refunds`` refunds (``Idempotency-Key`` required);
- ``GET /sandbox/checkout/{id}`` is the hosted test page; its form posts back to the same
  path. The card number decides the outcome and is then forgotten (only the last four
  digits are kept, like a real PSP); tillpay's API proper never sees it.
- Outcomes are announced by signed webhooks (Stripe-style ``t=…,v1=…``) that a worker job
  delivers to ``/v1/webhooks/sandbox``.

Test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined;
4000 0000 0000 9995 has insufficient funds; 4000 0000 0000 0077 stays processing and
settles as paid after ``sandbox_settle_seconds`` (no webhook: the janitor finds out);
4000 0000 0000 0085 succeeds but its webhook arrives twice and late.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.kit import signing
from tillpay.kit.crypto import derive_key
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, NotFound, Unprocessable
from tillpay.kit.ids import new_id
from tillpay.kit.jobs import nudge_after_commit
from tillpay.kit.money import AmountMinor, CurrencyCode
from tillpay.sandbox.models import (
    SandboxRefund,
    SandboxRefundStatus,
    SandboxSession,
    SandboxWebhook,
    SessionStatus,
)
from tillpay.settings import Settings

SESSION_LIFETIME = timedelta(minutes=30)
SIGNATURE_HEADER = "Tillpay-Sandbox-Signature"

# card → (outcome, decline code, whether the webhook arrives twice and late)
CARD_OUTCOMES: dict[str, tuple[SessionStatus, str | None, bool]] = {
    "4242424242424242": (SessionStatus.SUCCEEDED, None, False),
    "4000000000000002": (SessionStatus.FAILED, "card_declined", False),
    "4000000000009995": (SessionStatus.FAILED, "insufficient_funds", False),
    "4000000000000077": (SessionStatus.PROCESSING, None, False),
    "4000000000000085": (SessionStatus.SUCCEEDED, None, True),
}
UNKNOWN_CARD = (SessionStatus.FAILED, "unknown_test_card", False)


def api_key(settings: Settings) -> str:
    if settings.sandbox_secret_key is not None:
        return settings.sandbox_secret_key.get_secret_value()
    secret = settings.secret_key.get_secret_value().encode()
    return "sbx_sk_" + derive_key(secret, "sandbox-api-key").hex()


def webhook_secret(settings: Settings) -> bytes:
    if settings.sandbox_webhook_secret is not None:
        return settings.sandbox_webhook_secret.get_secret_value().encode()
    return derive_key(settings.secret_key.get_secret_value().encode(), "sandbox-webhook-secret")


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_\-]+$")]
    amount: AmountMinor
    currency: CurrencyCode
    return_url: Annotated[str, Field(max_length=2048)]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: AmountMinor


def _session_json(settings: Settings, row: SandboxSession) -> dict[str, Any]:
    status = row.status
    if (
        status == SessionStatus.PROCESSING
        and row.settle_at is not None
        and row.settle_at <= utcnow()
    ):
        status = SessionStatus.SUCCEEDED
    base = (settings.sandbox_api_base or settings.public_base_url).rstrip("/")
    return {
        "id": row.id,
        "object": "checkout_session",
        "reference": row.reference,
        "amount": row.amount,
        "currency": row.currency,
        "status": (
            SessionStatus.EXPIRED
            if status == SessionStatus.OPEN and row.expires_at <= utcnow()
            else status
        ),
        "decline_code": row.decline_code,
        "amount_refunded": row.refunded_amount,
        "card_last4": row.card_last4,
        "url": f"{base}/sandbox/checkout/{row.id}",
        "created": int(row.created_at.timestamp()),
        "expires_at": int(row.expires_at.timestamp()),
    }


async def _settle(session: AsyncSession, row: SandboxSession) -> None:
    """A processing session whose settle time passed becomes succeeded for good."""
    if (
        row.status == SessionStatus.PROCESSING
        and row.settle_at is not None
        and row.settle_at <= utcnow()
    ):
        row.status = SessionStatus.SUCCEEDED


# ----------------------------------------------------------------------------- the PSP's rules


class SessionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such session.")


async def open_session(
    session: AsyncSession, settings: Settings, body: SessionIn
) -> tuple[dict[str, Any], bool]:
    """The session for ``body.reference`` (and whether it is new): a repeated reference
    returns the existing session, unless it was for another amount."""
    existing = (
        await session.execute(
            select(SandboxSession).where(SandboxSession.reference == body.reference)
        )
    ).scalar_one_or_none()
    if existing is not None:
        if (existing.amount, existing.currency) != (body.amount, body.currency):
            raise Conflict("This reference was used for another amount.", code="reference_reused")
        return _session_json(settings, existing), False
    row = SandboxSession(
        reference=body.reference,
        amount=body.amount,
        currency=body.currency,
        return_url=body.return_url,
        status=SessionStatus.OPEN,
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    session.add(row)
    await session.flush()
    return _session_json(settings, row), True


async def read_session(session: AsyncSession, settings: Settings, reference: str) -> dict[str, Any]:
    row = (
        await session.execute(select(SandboxSession).where(SandboxSession.reference == reference))
    ).scalar_one_or_none()
    if row is None:
        raise SessionNotFound()
    await _settle(session, row)
    return _session_json(settings, row)


async def refund_session(
    session: AsyncSession, settings: Settings, session_id: str, amount: int, key: str | None
) -> tuple[dict[str, Any], bool]:
    """Refund ``amount`` of a paid session, once per idempotency ``key`` (required); a
    repeated key returns the first refund. Queues the ``refund.succeeded`` webhook."""
    if not key:
        raise Unprocessable("Idempotency-Key is required.", code="idempotency_key_required")
    existing = (
        await session.execute(select(SandboxRefund).where(SandboxRefund.idempotency_key == key))
    ).scalar_one_or_none()
    if existing is not None:
        return _refund_json(existing), False
    row = (
        await session.execute(
            select(SandboxSession).where(SandboxSession.id == session_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise SessionNotFound()
    await _settle(session, row)
    if row.status != SessionStatus.SUCCEEDED:
        raise Conflict("Only paid sessions can be refunded.", code="not_paid")
    if row.refunded_amount + amount > row.amount:
        raise Conflict("The refund exceeds what was paid.", code="refund_exceeds_payment")
    row.refunded_amount += amount
    refund = SandboxRefund(
        session_id=row.id,
        idempotency_key=key,
        amount=amount,
        status=SandboxRefundStatus.SUCCEEDED,
    )
    session.add(refund)
    await session.flush()
    _queue_webhook(
        session,
        settings,
        "refund.succeeded",
        {"refund": _refund_json(refund), "session": _session_json(settings, row)},
    )
    return _refund_json(refund), True


async def read_refund(session: AsyncSession, refund_id: str) -> dict[str, Any]:
    row = await session.get(SandboxRefund, refund_id)
    if row is None:
        raise NotFound("No such refund.")
    return _refund_json(row)


def is_open(row: SandboxSession) -> bool:
    """Whether the hosted page may still take a card for this session."""
    return row.status == SessionStatus.OPEN and row.expires_at > utcnow()


async def session_for_page(
    session: AsyncSession, session_id: str, *, lock: bool = False
) -> SandboxSession | None:
    query = select(SandboxSession).where(SandboxSession.id == session_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def pay_with_card(
    session: AsyncSession, settings: Settings, row: SandboxSession, card_number: str
) -> None:
    """Decide the outcome from the card, keep only the outcome and the last four digits,
    and queue the signed webhook."""
    digits = "".join(ch for ch in card_number if ch.isdigit())
    outcome, decline, late_twice = CARD_OUTCOMES.get(digits, UNKNOWN_CARD)
    row.card_last4 = digits[-4:] if len(digits) >= 4 else None
    row.status = outcome
    row.decline_code = decline
    if outcome == SessionStatus.PROCESSING:
        row.settle_at = utcnow() + timedelta(seconds=settings.sandbox_settle_seconds)
    if outcome in (SessionStatus.SUCCEEDED, SessionStatus.FAILED):
        _queue_webhook(
            session,
            settings,
            f"session.{outcome}",
            {"session": _session_json(settings, row)},
            delay=settings.sandbox_late_webhook_seconds if late_twice else 0,
            copies=2 if late_twice else 1,
        )


def _refund_json(row: SandboxRefund) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "refund",
        "session_id": row.session_id,
        "amount": row.amount,
        "status": row.status,
        "idempotency_key": row.idempotency_key,
    }


#: The worker job that delivers queued webhooks (an in-process worker is nudged at once).
DELIVERY_JOB = "sandbox.deliver_webhooks"


def _queue_webhook(
    session: AsyncSession,
    settings: Settings,
    event_type: str,
    data: dict[str, Any],
    *,
    delay: int = 0,
    copies: int = 1,
) -> None:
    event_id = new_id("sbe")
    body = json.dumps(
        {"id": event_id, "type": event_type, "created": int(utcnow().timestamp()), "data": data},
        separators=(",", ":"),
    )
    for copy in range(copies):
        session.add(
            SandboxWebhook(
                event_id=event_id,
                body=body,
                deliver_at=utcnow() + timedelta(seconds=delay * (copy + 1)),
            )
        )
    if delay == 0:
        nudge_after_commit(session, DELIVERY_JOB)


def signature_header(settings: Settings, body: bytes) -> str:
    return signing.sign(body, webhook_secret(settings))
