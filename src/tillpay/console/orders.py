"""``/console/orders``: search and read orders; cancel one the API would cancel.

Administrators (``orders:read_any``, as ``GET /v1/admin/orders``) see every shop order
with its customer, payments and refunds; a vendor (``orders:read_vendor``, as
``GET /v1/vendor/orders``) sees only orders holding their products, and of those only
their own lines: another vendor's order is a 404, as on the API.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy import select

from tillpay.accounts.models import User
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.accounts.users import user_by_email
from tillpay.console.common import (
    PAGE_SIZE,
    CursorParam,
    Text,
    clean,
    cursor_key,
    day_end,
    day_start,
    pager,
    parse_day,
    slice_of,
)
from tillpay.console.nav import page
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import BadRequest
from tillpay.kit.ids import lowest_id
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderStatus
from tillpay.payments import queries as payments
from tillpay.web.session import ConsolePrincipal, require_console_permission
from tillpay.web.templating import NOTICES, redirect

router = APIRouter(prefix="/console", include_in_schema=False)

OrderId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
# The API's cancel service decides per order (own, or any); the console only cancels
# other people's orders, so it asks for the admin power up front (2FA rule included)
# before it looks the order up.
Canceller = Annotated[Principal, Depends(require_console_permission(Permission.ORDERS_READ_ANY))]
NOTICES["order_cancelled"] = "The order was cancelled and its stock returned."
STATUSES = [s.value for s in OrderStatus]


def _status(value: str) -> OrderStatus | None:
    text = clean(value)
    if text is None:
        return None
    try:
        return OrderStatus(text)
    except ValueError:
        raise BadRequest("Choose an order status from the list.", code="bad_filter") from None


@dataclass(frozen=True)
class OrderForm:
    """The admin list's filter fields, as typed."""

    status: str = ""
    email: str = ""
    date_from: str = ""
    date_to: str = ""


async def _order_form(
    status: Text = "", email: Text = "", date_from: Text = "", date_to: Text = ""
) -> OrderForm:
    # An async factory, not Depends(OrderForm): a class would run in the thread pool.
    return OrderForm(status, email, date_from, date_to)


async def _vendor_list(session: ReadSession, principal: Principal, cursor: str) -> dict[str, Any]:
    mine = await orders.vendor_orders(session, principal, after=cursor_key(cursor), limit=PAGE_SIZE)
    more = mine[PAGE_SIZE - 1].id if len(mine) > PAGE_SIZE else None
    return {
        "vendor_view": True,
        "rows": mine[:PAGE_SIZE],
        "pager": pager("/console/orders", {}, cursor=cursor, last_key=more),
        "emails": {},
    }


async def _admin_list(
    session: ReadSession, principal: Principal, form: OrderForm, cursor: str
) -> dict[str, Any]:
    """One page of every shop order matching ``form``, with the customers' emails."""
    wanted = _status(form.status)
    first, last = parse_day(form.date_from, "From"), parse_day(form.date_to, "To")
    upper = lowest_id("ord", day_end(last)) if last else None
    since = lowest_id("ord", day_start(first)) if first else None
    customer_id: str | None = None
    address = clean(form.email)
    found = True
    if address is not None:
        user = await user_by_email(session, address.lower())
        found, customer_id = user is not None, user.id if user else None
    rows: list[Order] = []
    if found:
        after = cursor_key(cursor)
        bound = min(k for k in (after, upper) if k) if (after or upper) else None
        rows = await orders.list_orders(
            session, customer_id=customer_id, status=wanted, after=bound, since=since,
            limit=PAGE_SIZE,
        )  # fmt: skip
    more = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    ids = {o.customer_id for o in rows if o.customer_id}
    emails: dict[str, str] = {}
    if ids:
        result = await session.execute(select(User.id, User.email).where(User.id.in_(ids)))
        emails = {row.id: row.email for row in result}
    filters = dataclasses.asdict(form)
    return {
        "vendor_view": False,
        "rows": rows,
        "emails": emails,
        "pager": pager("/console/orders", filters, cursor=cursor, last_key=more),
    }


@router.get("/orders")
async def order_list(
    request: Request,
    principal: ConsolePrincipal,
    session: ReadSession,
    form: Annotated[OrderForm, Depends(_order_form)],
    cursor: CursorParam = "",
) -> Response:
    everything = await slice_of(
        request, principal, any_=Permission.ORDERS_READ_ANY, own=Permission.ORDERS_READ_VENDOR
    )
    if everything:
        context = await _admin_list(session, principal, form, cursor)
    else:
        context = await _vendor_list(session, principal, cursor)
    context |= {"filters": dataclasses.asdict(form), "statuses": STATUSES}
    return page(request, principal, "console/orders.html", context)


@router.get("/orders/{order_id}")
async def order_detail(
    request: Request, principal: ConsolePrincipal, session: ReadSession, order_id: OrderId
) -> Response:
    everything = await slice_of(
        request, principal, any_=Permission.ORDERS_READ_ANY, own=Permission.ORDERS_READ_VENDOR
    )
    if not everything:
        mine = await orders.vendor_order(session, principal, order_id)
        context = {"vendor_view": True, "order": mine.order, "lines": mine.lines}
        return page(request, principal, "console/order.html", context)
    order = await orders.get_order(session, principal, order_id)
    history = await orders.events(session, principal, order_id)
    paid = await payments.order_payments(session, principal, order_id)
    refunds = {p.id: await payments.list_refunds(session, principal, p.id) for p in paid}
    customer = await session.get(User, order.customer_id) if order.customer_id else None
    context = {
        "vendor_view": False,
        "order": order,
        "lines": order.lines,
        "events": history,
        "payments": paid,
        "refunds": refunds,
        "customer": customer,
        "cancellable": order.status is OrderStatus.PENDING_PAYMENT,
    }
    return page(request, principal, "console/order.html", context)


@router.post("/orders/{order_id}/cancel")
async def order_cancel(
    request: Request, principal: Canceller, session: DbSession, order_id: OrderId
) -> Response:
    """``POST /v1/orders/{id}/cancel``'s service: the same rule, audit and events."""
    order = await orders.cancel(session, principal, order_id)
    return redirect(request, f"/console/orders/{order.id}", notice="order_cancelled")
