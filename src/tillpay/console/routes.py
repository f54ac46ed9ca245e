"""The console's pages: thin routes (validate, call one query or service, render)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response

from tillpay.accounts.permissions import Permission
from tillpay.console import actions
from tillpay.console import overview as overview_queries
from tillpay.console import payments as payment_queries
from tillpay.console.nav import page
from tillpay.console.svg import bar_chart
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.money import Money
from tillpay.payments import review
from tillpay.payments.models import PaymentStatus
from tillpay.payments.routes import Runtime as PaymentsRuntime
from tillpay.web import templating
from tillpay.web.session import (
    ConsolePrincipal,
    RecentConsolePrincipal,
    require_console_permission,
)
from tillpay.web.templating import redirect

router = APIRouter(prefix="/console", include_in_schema=False)

templating.NOTICES.update(
    {
        "refunded": "Refund created.",
        "refund_pending": "Refund sent; the provider has not confirmed it yet.",
        "refund_failed": "The provider refused the refund. Nothing was refunded.",
        "reviewed": "Marked reviewed: the payment no longer needs review.",
    }
)
PaymentId = Annotated[str, Path(min_length=4, max_length=40, pattern=r"^pay_[0-9A-Za-z]+$")]
Text = Annotated[str, Query(max_length=120)]


async def payment_filter(
    status: Text = "",
    provider: Text = "",
    currency: Annotated[str, Query(max_length=3)] = "",
    amount_min: Text = "",
    amount_max: Text = "",
    date_from: Annotated[str, Query(max_length=10)] = "",
    date_to: Annotated[str, Query(max_length=10)] = "",
    email: Annotated[str, Query(max_length=320)] = "",
    order_id: Text = "",
    q: Text = "",
    needs_review: Annotated[str, Query(max_length=1)] = "",
    after: Annotated[str, Query(max_length=200)] = "",
) -> payment_queries.PaymentFilter:
    return payment_queries.PaymentFilter(
        status, provider, currency, amount_min, amount_max, date_from, date_to,
        email, order_id, q, needs_review, after,
    )  # fmt: skip


@router.get("")
async def overview(request: Request, principal: ConsolePrincipal, session: ReadSession) -> Response:
    figures = await overview_queries.overview(session, principal)
    chart = None
    if figures.chart_currency:
        currency = figures.chart_currency
        chart = bar_chart(
            figures.daily,
            title=f"Daily captured volume in {currency}, last 30 days",
            value_label=lambda v: Money(v, currency).format(),
        )
    return page(request, principal, "console/overview.html", {"o": figures, "chart": chart})


@router.get("/payments")
async def payments(
    request: Request,
    principal: ConsolePrincipal,
    session: ReadSession,
    where: Annotated[payment_queries.PaymentFilter, Depends(payment_filter)],
) -> Response:
    result = await payment_queries.list_payments(session, principal, where)
    context = {"result": result, "where": where, "statuses": list(PaymentStatus)}
    return page(request, principal, "console/payments.html", context)


@router.get("/payments/{payment_id}")
async def payment(
    request: Request, principal: ConsolePrincipal, session: ReadSession, payment_id: PaymentId
) -> Response:
    detail = await payment_queries.payment_detail(session, principal, payment_id)
    return page(request, principal, "console/payment.html", {"d": detail})


def _refund_form(
    request: Request, principal: ConsolePrincipal, detail: object, key: str, error: str | None
) -> Response:
    context = {"d": detail, "key": key, "error": error, "reasons": actions.REFUND_REASONS}
    return page(request, principal, "console/refund.html", context)


# Refunding is the API's admin power (2FA rule included), asked for before the form is
# read; the service checks it again with the payment.
Refunder = [Depends(require_console_permission(Permission.REFUNDS_CREATE))]


@router.get("/payments/{payment_id}/refund", dependencies=Refunder)
async def refund_form(
    request: Request, principal: RecentConsolePrincipal, session: ReadSession, payment_id: PaymentId
) -> Response:
    detail = await payment_queries.payment_detail(session, principal, payment_id)
    # One key per rendered form: posting it twice replays the first refund's answer.
    return _refund_form(request, principal, detail, secrets.token_urlsafe(24), None)


@router.post(
    "/payments/{payment_id}/refund", dependencies=[*Refunder, Depends(RateLimit("payments"))]
)
async def refund_submit(
    request: Request,
    principal: RecentConsolePrincipal,
    rt: PaymentsRuntime,
    payment_id: PaymentId,
    idempotency_key: Annotated[str, Form(min_length=16, max_length=64)],
    reason: Annotated[str, Form(max_length=40)],
    amount: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    answer = await actions.refund(
        rt, principal, payment_id=payment_id, amount=amount, reason=reason, key=idempotency_key
    )
    status = answer.body.get("status") if isinstance(answer.body, dict) else None
    notice = {"succeeded": "refunded", "failed": "refund_failed"}.get(str(status), "refund_pending")
    if answer.status_code >= 400 and status is None:
        notice = "refund_failed"
    return redirect(request, f"/console/payments/{payment_id}", notice=notice)


# Clearing a review flag is the API's payment-operations power (an administrator with 2FA),
# asked for before the form is read; the service checks it again.
Reviewer = [Depends(require_console_permission(review.PERMISSION))]


@router.post("/payments/{payment_id}/review", dependencies=Reviewer)
async def review_submit(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    payment_id: PaymentId,
    note: Annotated[str, Form(min_length=1, max_length=review.NOTE_MAX)],
) -> Response:
    """``payments.review.mark_reviewed``, as ``POST /v1/admin/payments/{id}/review``."""
    await review.mark_reviewed(session, principal, payment_id, note)
    return redirect(request, f"/console/payments/{payment_id}", notice="reviewed")
