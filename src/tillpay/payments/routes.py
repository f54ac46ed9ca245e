"""Payment, refund, webhook and ledger routes."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from tillpay.accounts.deps import (
    RecentPrincipal,
    VerifiedPrincipal,
    require_permission,
)
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.kit import idempotency
from tillpay.kit.db import DbSession
from tillpay.kit.errors import BadRequest, Forbidden, NotFound
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.logging import get_logger
from tillpay.ledger import service as ledger
from tillpay.payments import create, ignored_events, queries, refunds, sync
from tillpay.payments import webhooks as webhook_service
from tillpay.payments.models import Payment, PaymentStatus, Refund, WebhookEvent
from tillpay.payments.result_page import result_page
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.payments.schemas import (
    AttemptOut,
    LedgerBalanceOut,
    NextAction,
    PaymentCreate,
    PaymentOut,
    ProviderInfo,
    RefundCreate,
    RefundOut,
    WebhookAck,
    WebhookEventOut,
)

log = get_logger("tillpay.payments")
security_log = get_logger("tillpay.security")

router = APIRouter(tags=["payments"])
webhooks = APIRouter(tags=["webhooks"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

OrderId = Annotated[str, Path(max_length=40)]
PaymentId = Annotated[str, Path(max_length=40)]
IdempotencyKey = Annotated[str, Depends(idempotency.idempotency_key_header)]
Payer = Annotated[Principal, Depends(require_permission(Permission.PAYMENTS_CREATE))]
Customer = Annotated[Principal, Depends(require_permission(Permission.ORDERS_READ_OWN))]
LedgerReader = Annotated[Principal, Depends(require_permission(Permission.LEDGER_READ_ANY))]
Operator = Annotated[Principal, Depends(require_permission(Permission.PAYMENTS_OPERATE))]
PAYMENTS_LIMIT = [Depends(RateLimit("payments"))]


def runtime(request: Request) -> PaymentsRuntime:
    rt: PaymentsRuntime = request.app.state.payments
    return rt


Runtime = Annotated[PaymentsRuntime, Depends(runtime)]


def payment_out(payment: Payment) -> dict[str, Any]:
    latest = payment.attempts[-1] if payment.attempts else None
    action = NextAction(type="none")
    if (
        latest is not None
        and payment.status is PaymentStatus.REQUIRES_ACTION
        and latest.redirect_url
    ):
        action = NextAction(
            type="redirect", redirect_url=latest.redirect_url, client_data=dict(latest.client_data)
        )
    elif (
        latest is not None
        and payment.status is PaymentStatus.REQUIRES_ACTION
        and latest.client_data
    ):
        action = NextAction(type="client_sdk", client_data=dict(latest.client_data))
    return PaymentOut(
        id=payment.id,
        order_id=payment.order_id,
        provider=payment.provider,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        amount_captured=payment.amount_captured,
        amount_refunded=payment.amount_refunded,
        amount_refund_reserved=payment.amount_refund_reserved,
        applied=payment.applied,
        needs_review=payment.needs_review,
        next_action=action,
        attempts=[
            AttemptOut(
                id=a.id,
                attempt_no=a.attempt_no,
                status=a.status,
                provider_status=a.provider_status,
                error_code=a.error_code,
                created_at=a.created_at,
            )
            for a in payment.attempts
        ],
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    ).model_dump(mode="json")


def refund_out(refund: Refund) -> dict[str, Any]:
    return RefundOut(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        reason=refund.reason,
        error_code=refund.error_code,
        external=refund.external,
        created_at=refund.created_at,
    ).model_dump(mode="json")


def _balance_out(balance: ledger.Balance) -> LedgerBalanceOut:
    return LedgerBalanceOut(
        account=balance.code,
        kind=balance.kind,
        owner_id=balance.owner_id,
        currency=balance.currency,
        balance=balance.balance,
    )


def _event_out(event: WebhookEvent) -> WebhookEventOut:
    return WebhookEventOut(
        id=event.id,
        provider=event.provider,
        event_type=event.event_type,
        status=event.status,
        attempts=event.attempts,
        last_error=event.last_error,
        received_at=event.received_at,
        processed_at=event.processed_at,
    )


def _answer(answer: create.Answer) -> JSONResponse:
    response = JSONResponse(answer.body, status_code=answer.status_code)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get(
    "/v1/payments/providers", response_model=list[ProviderInfo], summary="Enabled providers"
)
async def providers(rt: Runtime) -> list[ProviderInfo]:
    """Providers whose settings are complete, with the currencies each accepts."""
    found = [(name, rt.providers.get(name)) for name in rt.providers.names()]
    return [ProviderInfo(name=n, currencies=a.currencies()) for n, a in found if a is not None]


@router.post(
    "/v1/orders/{order_id}/payments",
    response_model=PaymentOut,
    status_code=201,
    dependencies=PAYMENTS_LIMIT,
    summary="Start paying an order",
    responses={
        200: {"description": "The order's open payment with this provider"},
        402: {"description": "Declined by the provider"},
        409: {"description": "The order cannot be paid (paid, cancelled, expired)"},
        502: {"description": "The provider refused the request"},
        503: {"description": "Outcome unknown (provider unreachable); poll the payment"},
    },
)
async def create_payment(
    order_id: OrderId,
    body: PaymentCreate,
    principal: VerifiedPrincipal,
    payer: Payer,
    rt: Runtime,
    key: IdempotencyKey,
) -> JSONResponse:
    """Returns what the client needs next: `next_action.redirect_url` for hosted checkout.
    Retrying with the same `Idempotency-Key` returns the original answer."""
    answer = await create.create_payment(
        rt,
        principal,
        order_id=order_id,
        provider=body.provider,
        return_url=body.return_url,
        key=key,
        render=payment_out,
    )
    return _answer(answer)


@router.get(
    "/v1/orders/{order_id}/payments", response_model=list[PaymentOut], summary="An order's payments"
)
async def list_order_payments(
    order_id: OrderId, principal: Customer, session: DbSession
) -> list[dict[str, Any]]:
    return [payment_out(p) for p in await queries.order_payments(session, principal, order_id)]


@router.get("/v1/payments/{payment_id}", response_model=PaymentOut, summary="A payment")
async def get_payment(
    payment_id: PaymentId, principal: Customer, session: DbSession
) -> dict[str, Any]:
    return payment_out(await queries.get_payment(session, principal, payment_id))


@router.get(
    "/v1/payments/{payment_id}/return",
    dependencies=PAYMENTS_LIMIT,
    summary="Browser return from the provider",
    response_class=RedirectResponse,
    status_code=303,
)
async def payment_return(payment_id: PaymentId, request: Request, rt: Runtime) -> Response:
    """Public on purpose (the browser arrives from the provider). Query parameters are
    ignored: the status is synchronised with the provider server-side, then the browser
    goes to the shop's allow-listed return URL with only the payment id; without one, a
    result page tells the shopper the synchronised outcome."""
    payment = await sync.sync_payment(rt, payment_id, source="return")
    if payment is None:
        raise NotFound("No such payment.")
    if payment.return_url:
        separator = "&" if "?" in payment.return_url else "?"
        return RedirectResponse(
            f"{payment.return_url}{separator}payment_id={payment.id}", status_code=303
        )
    return result_page(payment)


@router.post(
    "/v1/payments/{payment_id}/refunds",
    response_model=RefundOut,
    status_code=201,
    dependencies=PAYMENTS_LIMIT,
    summary="Refund a payment (full or partial)",
    responses={409: {"description": "More than what is still refundable"}},
)
async def create_refund(
    payment_id: PaymentId,
    body: RefundCreate,
    principal: RecentPrincipal,
    rt: Runtime,
    key: IdempotencyKey,
) -> JSONResponse:
    """Admins (or, when enabled, the vendor of every line) with a recent authentication."""
    answer = await refunds.create_refund(
        rt,
        principal,
        payment_id=payment_id,
        amount=body.amount,
        reason=body.reason,
        key=key,
        render=refund_out,
    )
    return _answer(answer)


@router.get(
    "/v1/payments/{payment_id}/refunds",
    response_model=list[RefundOut],
    summary="A payment's refunds",
)
async def list_refunds(
    payment_id: PaymentId, principal: Customer, session: DbSession
) -> list[dict[str, Any]]:
    return [refund_out(r) for r in await queries.list_refunds(session, principal, payment_id)]


@webhooks.post(
    "/v1/webhooks/{provider}",
    response_model=WebhookAck,
    dependencies=[Depends(RateLimit("webhooks"))],
    summary="Provider webhooks",
)
async def receive_webhook(
    provider: Annotated[str, Path(max_length=32, pattern=r"^[a-z]+$")],
    request: Request,
    session: DbSession,
    rt: Runtime,
) -> WebhookAck:
    """No user authentication: the provider's signature over the raw body is verified
    first; the event is stored (once) and processed by the worker. A verified event tillpay
    does not act on (another type, someone else's object, an unexpected shape) is stored as
    ``ignored`` and answered 200, so the provider stops retrying it; only a bad signature or
    a body that is not JSON is refused."""
    adapter = rt.providers.get(provider)
    if adapter is None:
        raise NotFound("No such webhook endpoint.")
    # Optional source allow-list (defence in depth, never the gate): the client address
    # comes from the trusted-proxy middleware, not from a header the caller controls.
    allowed_source = getattr(adapter, "allowed_source", None)
    if allowed_source is not None and not allowed_source(client_ip(request.scope)):
        security_log.warning(
            "webhook.source_refused", provider=provider, ip=client_ip(request.scope)
        )
        raise Forbidden("Webhook source not allowed.", code="webhook_source_refused")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not adapter.verify_webhook(body, headers):
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
        notice = adapter.parse_webhook(body, headers)
    except Exception:  # noqa: BLE001 - a signed event of a shape this adapter cannot read
        log.warning("webhook.payload_unexpected_shape", provider=provider, size=len(body))
        notice, reason = None, ignored_events.UNEXPECTED_SHAPE
    if notice is None:
        stored = await ignored_events.store_ignored_webhook(session, provider, body, reason=reason)
    else:
        stored = await webhook_service.store_webhook(session, provider, notice, body)
    return WebhookAck(received=True, duplicate=not stored)


@admin.get("/ledger/accounts", response_model=list[LedgerBalanceOut], summary="Ledger balances")
async def ledger_accounts(principal: LedgerReader, session: DbSession) -> list[LedgerBalanceOut]:
    return [_balance_out(b) for b in await ledger.balances(session)]


@router.get(
    "/v1/vendor/balance",
    response_model=list[LedgerBalanceOut],
    summary="The vendor's payable balance",
)
async def vendor_balance(
    principal: Annotated[Principal, Depends(require_permission(Permission.LEDGER_READ_OWN))],
    session: DbSession,
) -> list[LedgerBalanceOut]:
    """What the platform owes the vendor, per currency (credit balances are negative)."""
    return [_balance_out(b) for b in await ledger.balances(session, owner_id=principal.user_id)]


@admin.get(
    "/webhook-events", response_model=list[WebhookEventOut], summary="Stored provider webhooks"
)
async def webhook_events(
    principal: Operator,
    session: DbSession,
    status: Annotated[str | None, Query(pattern=r"^(pending|processed|dead|ignored)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[WebhookEventOut]:
    query = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    return [_event_out(e) for e in (await session.execute(query)).scalars()]


@admin.post(
    "/webhook-events/{event_id}/replay",
    response_model=WebhookEventOut,
    summary="Replay a dead event",
)
async def replay_webhook_event(
    event_id: Annotated[str, Path(max_length=40)], principal: Operator, session: DbSession
) -> WebhookEventOut:
    return _event_out(await webhook_service.replay_webhook(session, principal, event_id))


@admin.get(
    "/payments", response_model=list[PaymentOut], summary="Payments, e.g. those needing review"
)
async def admin_payments(
    principal: Operator,
    session: DbSession,
    needs_review: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[dict[str, Any]]:
    query = select(Payment).order_by(Payment.created_at.desc()).limit(limit)
    if needs_review is not None:
        query = query.where(Payment.needs_review.is_(needs_review))
    return [payment_out(p) for p in (await session.execute(query)).scalars()]
