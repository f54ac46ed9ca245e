"""Headless payments API: a shop backend (API key or service token) pays its own orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.kit import idempotency
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.idempotency import IdempotentRequest
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, next_cursor
from tillpay.payments import headless
from tillpay.payments.headless_schemas import (
    HeadlessPaymentCreate,
    HeadlessPaymentOut,
    HeadlessPaymentPage,
    Reference,
)
from tillpay.payments.routes import Runtime

router = APIRouter(tags=["headless payments"])

PaymentId = Annotated[str, Path(max_length=40)]
IdempotencyKey = Annotated[str, Depends(idempotency.idempotency_key_header)]
Writer = Annotated[Principal, Depends(require_permission(Permission.PAYMENTS_WRITE))]
Reader = Annotated[Principal, Depends(require_permission(Permission.PAYMENTS_READ))]
PAYMENTS_LIMIT = [Depends(RateLimit("payments"))]


@router.post(
    "/v1/payments",
    response_model=HeadlessPaymentOut,
    status_code=201,
    dependencies=PAYMENTS_LIMIT,
    summary="Create a headless payment for the shop's own order",
    responses={
        402: {"description": "Declined by the provider"},
        403: {"description": "Not a shop credential, or it lacks `payments:write`"},
        409: {"description": "The reference is taken, or the key was used for another body"},
        502: {"description": "The provider refused the request"},
        503: {"description": "Outcome unknown (provider unreachable); poll the payment"},
    },
)
async def create_headless_payment(
    body: HeadlessPaymentCreate, principal: Writer, rt: Runtime, key: IdempotencyKey
) -> JSONResponse:
    """For an API key or service token with `payments:write`: the payment of an order the
    shop's backend owns, `reference` unique per merchant. The answer carries
    `next_action` (e.g. `redirect_url`); retrying with the same `Idempotency-Key` and body
    replays it."""
    request = IdempotentRequest(
        principal.user_id, key, "POST /v1/payments", body.model_dump(mode="json")
    )
    answer = await headless.create_headless_payment(rt, principal, request, body)
    return answer.response()


@router.get(
    "/v1/payments",
    response_model=HeadlessPaymentPage,
    summary="The merchant's headless payments",
)
async def list_headless_payments(
    principal: Reader,
    session: ReadSession,
    reference: Annotated[Reference | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> HeadlessPaymentPage:
    """A machine credential sees its own merchant's payments; an administrator all."""
    after = decode_cursor(cursor) if cursor else None
    rows = await headless.list_headless_payments(
        session, principal, reference=reference, after=after, limit=limit
    )
    return HeadlessPaymentPage(items=rows[:limit], next_cursor=next_cursor(rows, limit))


@router.post(
    "/v1/payments/{payment_id}/cancel",
    response_model=HeadlessPaymentOut,
    dependencies=PAYMENTS_LIMIT,
    summary="Cancel a headless payment that has not completed",
    responses={409: {"description": "The payment already succeeded, failed or ended"}},
)
async def cancel_headless_payment(
    payment_id: PaymentId, principal: Writer, rt: Runtime, session: DbSession
) -> HeadlessPaymentOut:
    return await headless.cancel_headless_payment(session, rt.settings, principal, payment_id)
