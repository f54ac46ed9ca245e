"""Checkout, the order page and paying: the API's own services (``orders.service.checkout``,
``payments.create.create_payment``), with the API's rules (verified email, permissions,
idempotency keys, ``RateLimit("payments")``). The order page is the payment's
``return_url``; its status endpoint feeds the page's live update (``shop.js``)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.kit import idempotency
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import Forbidden, NotFound
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderStatus
from tillpay.payments import create, queries, result_page
from tillpay.payments import state as payment_states
from tillpay.payments.models import Payment, PaymentStatus
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.shop.routes import page
from tillpay.shop.session import Shopper
from tillpay.web.templating import finish, redirect

router = APIRouter(prefix="/shop", include_in_schema=False)

OrderId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
# A form's idempotency key, drawn when the form is shown: a double submit is one request.
FormKey = Annotated[str, Form(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PAID = {OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED}


def _verified(shopper: Principal, permission: Permission) -> None:
    """The API's rule for checkout and payments: the permission, and a verified email."""
    if not shopper.can(permission):
        raise Forbidden("This account cannot buy in the shop.")
    if not shopper.email_verified:
        raise Forbidden("Verify your email address first.", code="email_not_verified")


@router.post("/checkout")
async def checkout(
    request: Request, session: DbSession, shopper: Shopper, key: FormKey
) -> Response:
    _verified(shopper, Permission.CART_USE)
    once = idempotency.IdempotentRequest(shopper.user_id, key, "POST /shop/checkout", {})

    async def work() -> idempotency.Answer:
        order = await orders.checkout(session, request.app.state.settings, shopper)
        return idempotency.Answer(201, {"id": order.id})

    answer = await idempotency.once(session, once, work)
    return redirect(request, f"/shop/orders/{answer.body['id']}")


async def _own_order(session: AsyncSession, shopper: Principal, order_id: str) -> Order:
    """The shopper's own order; anyone else's (whoever may see it elsewhere) is a 404."""
    order = await orders.get_order(session, shopper, order_id)
    if order.customer_id != shopper.user_id:
        raise NotFound("No such order.")
    return order


def _live_state(order: Order, payment: Payment | None) -> str:
    return f"{order.status.value}:{payment.status.value if payment else ''}"


@router.get("/orders/{order_id}")
async def order_page(
    order_id: OrderId, request: Request, session: ReadSession, shopper: Shopper
) -> Response:
    order = await _own_order(session, shopper, order_id)
    payments = await queries.order_payments(session, shopper, order_id)
    latest = payments[-1] if payments else None
    rt: PaymentsRuntime = request.app.state.payments
    providers = [
        name
        for name, adapter in rt.enabled()
        if adapter.supports(order.currency, order.total_amount)
    ]
    pending = order.status is OrderStatus.PENDING_PAYMENT
    waiting = pending and latest is not None and latest.status in payment_states.OPEN
    context: dict[str, Any] = {
        "order": order,
        "payment": latest,
        "paid_payment": next((p for p in payments if p.status is PaymentStatus.SUCCEEDED), None),
        "outcome": result_page.outcome(latest) if latest is not None else None,
        "paid": order.status in PAID,
        "pending": pending,
        "waiting": waiting,
        "failed": pending and latest is not None and not waiting,
        "providers": providers,
        "form_key": secrets.token_urlsafe(24),
        "live_state": _live_state(order, latest),
    }
    return page(request, shopper, "shop/order.html", context)


@router.get("/orders/{order_id}/status")
async def order_status(order_id: OrderId, session: ReadSession, shopper: Shopper) -> JSONResponse:
    """The order's and its latest payment's status: what ``shop.js`` polls while the page
    waits for the provider's webhook (a small answer; the page itself is re-read only
    when this changes)."""
    order = await _own_order(session, shopper, order_id)
    payments = await queries.order_payments(session, shopper, order_id)
    state = _live_state(order, payments[-1] if payments else None)
    return JSONResponse({"state": state}, headers={"Cache-Control": "no-store"})


@router.post("/orders/{order_id}/pay", dependencies=[Depends(RateLimit("payments"))])
async def pay(
    order_id: OrderId,
    request: Request,
    shopper: Shopper,
    key: FormKey,
    provider: Annotated[str, Form(min_length=2, max_length=32, pattern=r"^[a-z]+$")],
) -> Response:
    """Start (or, after a decline, start again) paying the order at ``provider`` and send
    the browser to its hosted page; the provider returns it to the order page."""
    _verified(shopper, Permission.PAYMENTS_CREATE)
    rt: PaymentsRuntime = request.app.state.payments
    return_url = f"{rt.settings.public_base_url}/shop/orders/{order_id}"
    once = idempotency.IdempotentRequest(
        shopper.user_id,
        key,
        f"POST /shop/orders/{order_id}/pay",
        {"provider": provider, "return_url": return_url},
    )
    answer = await create.create_payment(
        rt, shopper, once, order_id=order_id, provider=provider, return_url=return_url
    )
    target = (answer.body.get("next_action") or {}).get("redirect_url")
    if answer.status_code >= 300 or not isinstance(target, str):
        # Declined at once, or the provider is unreachable: the order page says which.
        return redirect(request, f"/shop/orders/{order_id}")
    if _same_origin(target, rt.settings.public_base_url):
        return finish(request, RedirectResponse(target, status_code=303))
    # The page's CSP (form-action 'self') also governs a form post's redirects: another
    # origin is reached by a link (followed by shop.js at once, by a click without JS).
    return page(request, shopper, "shop/continue.html", {"target": target, "provider": provider})


def _same_origin(url: str, base: str) -> bool:
    one, other = urlsplit(url), urlsplit(base)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)
