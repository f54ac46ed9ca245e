"""The sandbox payment service provider.

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

import hmac
import html
import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.kit import signing
from tillpay.kit.crypto import derive_key
from tillpay.kit.db import DbSession, utcnow
from tillpay.kit.errors import Conflict, NotFound, Unauthorized, Unprocessable
from tillpay.kit.ids import new_id
from tillpay.kit.money import AmountMinor, CurrencyCode, Money
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

PAGE_CSP = (
    "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def api_key(settings: Settings) -> str:
    if settings.sandbox_secret_key is not None:
        return settings.sandbox_secret_key.get_secret_value()
    secret = settings.secret_key.get_secret_value().encode()
    return "sbx_sk_" + derive_key(secret, "sandbox-api-key").hex()


def webhook_secret(settings: Settings) -> bytes:
    if settings.sandbox_webhook_secret is not None:
        return settings.sandbox_webhook_secret.get_secret_value().encode()
    return derive_key(settings.secret_key.get_secret_value().encode(), "sandbox-webhook-secret")


api = APIRouter(prefix="/sandbox/api", tags=["sandbox"], include_in_schema=False)
page = APIRouter(prefix="/sandbox/checkout", tags=["sandbox"], include_in_schema=False)


def _authorize(request: Request, authorization: str | None) -> None:
    expected = f"Bearer {api_key(request.app.state.settings)}".encode()
    if not hmac.compare_digest((authorization or "").encode(), expected):
        raise Unauthorized("Invalid sandbox API key.")


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


@api.post("/sessions")
async def create_session(
    body: SessionIn,
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Idempotent on ``reference``: the existing session comes back for a repeat."""
    _authorize(request, authorization)
    settings: Settings = request.app.state.settings
    existing = (
        await session.execute(
            select(SandboxSession).where(SandboxSession.reference == body.reference)
        )
    ).scalar_one_or_none()
    if existing is not None:
        if (existing.amount, existing.currency) != (body.amount, body.currency):
            raise Conflict("This reference was used for another amount.", code="reference_reused")
        return JSONResponse(_session_json(settings, existing))
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
    return JSONResponse(_session_json(settings, row), status_code=201)


@api.get("/sessions/by-reference/{reference}")
async def get_session(
    reference: Annotated[str, Path(max_length=80)],
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    row = (
        await session.execute(select(SandboxSession).where(SandboxSession.reference == reference))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such session.")
    await _settle(session, row)
    return JSONResponse(_session_json(request.app.state.settings, row))


@api.post("/sessions/{session_id}/refunds")
async def refund_session(
    session_id: Annotated[str, Path(max_length=40)],
    body: RefundIn,
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    if not idempotency_key:
        raise Unprocessable("Idempotency-Key is required.", code="idempotency_key_required")
    existing = (
        await session.execute(
            select(SandboxRefund).where(SandboxRefund.idempotency_key == idempotency_key)
        )
    ).scalar_one_or_none()
    if existing is not None:
        return JSONResponse(_refund_json(existing))
    row = (
        await session.execute(
            select(SandboxSession).where(SandboxSession.id == session_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such session.")
    await _settle(session, row)
    if row.status != SessionStatus.SUCCEEDED:
        raise Conflict("Only paid sessions can be refunded.", code="not_paid")
    if row.refunded_amount + body.amount > row.amount:
        raise Conflict("The refund exceeds what was paid.", code="refund_exceeds_payment")
    row.refunded_amount += body.amount
    refund = SandboxRefund(
        session_id=row.id,
        idempotency_key=idempotency_key,
        amount=body.amount,
        status=SandboxRefundStatus.SUCCEEDED,
    )
    session.add(refund)
    await session.flush()
    _queue_webhook(
        session,
        request.app.state.settings,
        "refund.succeeded",
        {"refund": _refund_json(refund), "session": _session_json(request.app.state.settings, row)},
    )
    return JSONResponse(_refund_json(refund), status_code=201)


@api.get("/refunds/{refund_id}")
async def get_refund(
    refund_id: Annotated[str, Path(max_length=40)],
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    row = await session.get(SandboxRefund, refund_id)
    if row is None:
        raise NotFound("No such refund.")
    return JSONResponse(_refund_json(row))


def _refund_json(row: SandboxRefund) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "refund",
        "session_id": row.session_id,
        "amount": row.amount,
        "status": row.status,
        "idempotency_key": row.idempotency_key,
    }


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


# ----------------------------------------------------------------------------- hosted page

_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
    "color:#1b1f24}h1{font-size:1.3rem}.amount{font-size:2rem;margin:.5rem 0 1.5rem}"
    "label{display:block;margin:.8rem 0 .3rem}input{width:100%;padding:.6rem;font-size:1rem;"
    "box-sizing:border-box}button{margin-top:1.2rem;width:100%;padding:.8rem;font-size:1rem;"
    "background:#1a56db;color:#fff;border:0;border-radius:.3rem}.note{color:#57606a;"
    "font-size:.85rem}.result{padding:1rem;border-radius:.3rem;background:#f3f4f6}"
)


# How a closed checkout is described (session statuses are not English adjectives).
STATUS_SENTENCES: dict[SessionStatus, str] = {
    SessionStatus.SUCCEEDED: "This checkout has been paid.",
    SessionStatus.FAILED: "This checkout was declined.",
    SessionStatus.PROCESSING: "The payment for this checkout is being processed.",
    SessionStatus.EXPIRED: "This checkout has expired.",
}


def _closed_sentence(row: SandboxSession) -> str:
    status = SessionStatus.EXPIRED if row.status == SessionStatus.OPEN else row.status
    return STATUS_SENTENCES.get(status, "This checkout is closed.")


def _style_hash() -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def _page(body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>tillpay sandbox checkout</title><style>{_STYLE}</style></head><body>{body}"
        "</body></html>"
    )
    response = HTMLResponse(document, status_code=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP.format(style_hash=_style_hash())
    response.headers["Cache-Control"] = "no-store"
    return response


@page.get("/{session_id}")
async def checkout_page(
    session_id: Annotated[str, Path(max_length=40)], session: DbSession
) -> HTMLResponse:
    row = await session.get(SandboxSession, session_id)
    if row is None:
        return _page("<h1>Checkout not found</h1>", status=404)
    amount = html.escape(str(Money(row.amount, row.currency)))
    if row.status != SessionStatus.OPEN or row.expires_at <= utcnow():
        return _page(
            f"<h1>tillpay sandbox</h1><p class=result>{html.escape(_closed_sentence(row))}</p>"
        )
    return _page(
        "<h1>tillpay sandbox checkout</h1>"
        f"<div class=amount>{amount}</div>"
        f"<form method=post action='/sandbox/checkout/{html.escape(row.id)}' autocomplete=off>"
        "<label for=card>Test card number</label>"
        "<input id=card name=card_number inputmode=numeric required "
        "placeholder='4242 4242 4242 4242' maxlength=23>"
        "<button type=submit>Pay</button></form>"
        "<p class=note>Sandbox only: no real card is charged. 4242… succeeds, 4000…0002 is "
        "declined, 4000…9995 has insufficient funds, 4000…0077 stays pending, 4000…0085 "
        "succeeds with a late, duplicated webhook.</p>"
    )


@page.post("/{session_id}")
async def submit_page(
    session_id: Annotated[str, Path(max_length=40)],
    request: Request,
    session: DbSession,
    card_number: Annotated[str, Form(max_length=32)],
) -> Response:
    """Decide the outcome from the card, keep only the outcome and the last four digits,
    queue the signed webhook, and send the browser back to tillpay's return URL."""
    settings: Settings = request.app.state.settings
    row = (
        await session.execute(
            select(SandboxSession).where(SandboxSession.id == session_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        return _page("<h1>Checkout not found</h1>", status=404)
    if row.status != SessionStatus.OPEN or row.expires_at <= utcnow():
        return _page(
            f"<h1>tillpay sandbox</h1><p class=result>{html.escape(_closed_sentence(row))}</p>",
            status=409,
        )
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
    return RedirectResponse(row.return_url, status_code=303)


def signature_header(settings: Settings, body: bytes) -> str:
    return signing.sign(body, webhook_secret(settings))
