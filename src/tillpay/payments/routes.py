"""Payment, refund, webhook and ledger routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tillpay.accounts.deps import (
    RecentCaller,
    VerifiedPrincipal,
    machine_scope,
    require_permission,
)
from tillpay.accounts.permissions import Permission, Scope
from tillpay.accounts.principal import Principal
from tillpay.kit import idempotency
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import NotFound
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.idempotency import IdempotentRequest
from tillpay.kit.logging import get_logger
from tillpay.ledger import service as ledger
from tillpay.payments import create, queries, refunds, review, sync
from tillpay.payments import webhooks as webhook_service
from tillpay.payments.result_page import result_page
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.payments.schemas import (
    LedgerBalanceOut,
    PaymentCreate,
    PaymentOut,
    PaymentReview,
    ProviderInfo,
    RefundCreate,
    RefundOut,
    ReviewedPaymentOut,
    WebhookAck,
    WebhookEventOut,
)

log = get_logger("tillpay.payments")
security_log = get_logger("tillpay.security")

# People by the payment's own rule (``queries.get_payment``); machines with payments:read.
RefundReader = Annotated[
    Principal,
    Depends(require_permission(Permission.ORDERS_READ_OWN, machine=Scope.PAYMENTS_READ)),
]

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


async def runtime(request: Request) -> PaymentsRuntime:
    rt: PaymentsRuntime = request.app.state.payments
    return rt


Runtime = Annotated[PaymentsRuntime, Depends(runtime)]


@router.get(
    "/v1/payments/providers", response_model=list[ProviderInfo], summary="Enabled providers"
)
async def providers(rt: Runtime) -> list[ProviderInfo]:
    """Providers whose settings are complete, with the currencies each accepts."""
    return [ProviderInfo(name=n, currencies=a.currencies()) for n, a in rt.enabled()]


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
    request = IdempotentRequest(
        principal.user_id,
        key,
        f"POST /v1/orders/{order_id}/payments",
        {"provider": body.provider, "return_url": body.return_url},
    )
    answer = await create.create_payment(
        rt,
        principal,
        request,
        order_id=order_id,
        provider=body.provider,
        return_url=body.return_url,
    )
    return answer.response()


@router.get(
    "/v1/orders/{order_id}/payments", response_model=list[PaymentOut], summary="An order's payments"
)
async def list_order_payments(
    order_id: OrderId, principal: Customer, session: ReadSession
) -> list[PaymentOut]:
    payments = await queries.order_payments(session, principal, order_id)
    return [PaymentOut.model_validate(p) for p in payments]


@router.get("/v1/payments/{payment_id}", response_model=PaymentOut, summary="A payment")
async def get_payment(
    payment_id: PaymentId,
    principal: Annotated[Principal, Depends(machine_scope(Scope.PAYMENTS_READ))],
    session: ReadSession,
) -> PaymentOut:
    """A customer's own payment (an admin's any); a shop credential with `payments:read`
    its own merchant's headless payments."""
    return PaymentOut.model_validate(await queries.get_payment(session, principal, payment_id))


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
    dependencies=[*PAYMENTS_LIMIT, Depends(machine_scope(Scope.REFUNDS_WRITE))],
    summary="Refund a payment (full or partial)",
    responses={409: {"description": "More than what is still refundable"}},
)
async def create_refund(
    payment_id: PaymentId,
    body: RefundCreate,
    principal: RecentCaller,
    rt: Runtime,
    key: IdempotencyKey,
) -> JSONResponse:
    """Admins (or, when enabled, the vendor of every line) with a recent authentication;
    a shop credential with `refunds:write` for its own merchant's headless payments."""
    request = IdempotentRequest(
        principal.user_id,
        key,
        f"POST /v1/payments/{payment_id}/refunds",
        {"amount": body.amount, "reason": body.reason},
    )
    answer = await refunds.create_refund(
        rt, principal, request, payment_id=payment_id, amount=body.amount, reason=body.reason
    )
    return answer.response()


@router.get(
    "/v1/payments/{payment_id}/refunds",
    response_model=list[RefundOut],
    summary="A payment's refunds",
)
async def list_refunds(
    payment_id: PaymentId, principal: RefundReader, session: ReadSession
) -> list[RefundOut]:
    """The payment's customer or staff; a shop credential with `payments:read` for its
    own merchant's headless payments."""
    return [
        RefundOut.model_validate(r)
        for r in await queries.list_refunds(session, principal, payment_id)
    ]


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
    stored = await webhook_service.receive_webhook(
        session,
        provider,
        adapter,
        source_ip=client_ip(request.scope),
        read_body=request.body,
        headers=request.headers,
    )
    return WebhookAck(received=True, duplicate=not stored)


@admin.get("/ledger/accounts", response_model=list[LedgerBalanceOut], summary="Ledger balances")
async def ledger_accounts(principal: LedgerReader, session: ReadSession) -> list[LedgerBalanceOut]:
    return [LedgerBalanceOut.model_validate(b) for b in await ledger.balances(session)]


@router.get(
    "/v1/vendor/balance",
    response_model=list[LedgerBalanceOut],
    summary="The vendor's payable balance",
)
async def vendor_balance(
    principal: Annotated[Principal, Depends(require_permission(Permission.LEDGER_READ_OWN))],
    session: ReadSession,
) -> list[LedgerBalanceOut]:
    """What the platform owes the vendor, per currency (credit balances are negative)."""
    return [
        LedgerBalanceOut.model_validate(b)
        for b in await ledger.balances(session, owner_id=principal.user_id)
    ]


@admin.get(
    "/webhook-events", response_model=list[WebhookEventOut], summary="Stored provider webhooks"
)
async def webhook_events(
    principal: Operator,
    session: ReadSession,
    status: Annotated[str | None, Query(pattern=r"^(pending|processed|dead|ignored)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[WebhookEventOut]:
    events = await queries.webhook_events(session, status=status, limit=limit)
    return [WebhookEventOut.model_validate(e) for e in events]


@admin.post(
    "/webhook-events/{event_id}/replay",
    response_model=WebhookEventOut,
    summary="Replay a dead event",
)
async def replay_webhook_event(
    event_id: Annotated[str, Path(max_length=40)], principal: Operator, session: DbSession
) -> WebhookEventOut:
    event = await webhook_service.replay_webhook(session, principal, event_id)
    return WebhookEventOut.model_validate(event)


@admin.get(
    "/payments", response_model=list[PaymentOut], summary="Payments, e.g. those needing review"
)
async def admin_payments(
    principal: Operator,
    session: ReadSession,
    needs_review: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[PaymentOut]:
    payments = await queries.admin_payments(session, needs_review=needs_review, limit=limit)
    return [PaymentOut.model_validate(p) for p in payments]


@admin.post(
    "/payments/{payment_id}/review",
    response_model=ReviewedPaymentOut,
    summary="Mark a payment reviewed",
    responses={
        404: {"description": "No such payment"},
        409: {"description": "The payment does not need review (`payment_not_flagged`)"},
    },
)
async def review_payment(
    payment_id: PaymentId, body: PaymentReview, principal: Operator, session: DbSession
) -> ReviewedPaymentOut:
    """Clears `needs_review` once an operator has dealt with what flagged it (refunded,
    reconciled with the provider, …), keeping who, when and the note. Audited
    (`payment.reviewed`) and announced as the `payment.reviewed` event."""
    payment = await review.mark_reviewed(session, principal, payment_id, body.note)
    return ReviewedPaymentOut.model_validate(payment)
