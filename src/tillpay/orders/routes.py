"""Checkout and order routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from tillpay.accounts.deps import VerifiedPrincipal, require_permission
from tillpay.accounts.permissions import Permission, Scope
from tillpay.accounts.principal import Principal
from tillpay.kit import idempotency
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from tillpay.orders import service
from tillpay.orders.models import OrderStatus
from tillpay.orders.schemas import (
    CheckoutIn,
    OrderEventOut,
    OrderOut,
    OrderPage,
    VendorOrderPage,
)

router = APIRouter(tags=["orders"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

OrderId = Annotated[str, Path(max_length=40, examples=["ord_01JD3XK5Q6R7S8T9V0W1X2Y3Z4"])]
Customer = Annotated[Principal, Depends(require_permission(Permission.ORDERS_READ_OWN))]
# An order by id: its customer, staff with ORDERS_READ_ANY, or a shop backend's `orders:read`.
OrderReader = Annotated[
    Principal,
    Depends(require_permission(Permission.ORDERS_READ_OWN, machine=Scope.ORDERS_READ)),
]
Shopper = Annotated[Principal, Depends(require_permission(Permission.CART_USE))]
Vendor = Annotated[Principal, Depends(require_permission(Permission.ORDERS_READ_VENDOR))]
AnyOrderReader = Annotated[Principal, Depends(require_permission(Permission.ORDERS_READ_ANY))]
Fulfiller = Annotated[Principal, Depends(require_permission(Permission.ORDERS_FULFIL))]
IdempotencyKey = Annotated[str, Depends(idempotency.idempotency_key_header)]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.post(
    "/v1/checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    summary="Turn the cart into an order awaiting payment",
    responses={
        409: {"description": "Out of stock, empty cart, or a request with this key running"},
        422: {"description": "Idempotency-Key reused with a different request"},
    },
)
async def checkout(
    request: Request,
    principal: VerifiedPrincipal,
    shopper: Shopper,
    session: DbSession,
    key: IdempotencyKey,
    body: CheckoutIn | None = None,
) -> Response:
    """Prices and totals come from the catalog; stock is reserved until `expires_at`.
    Retrying with the same `Idempotency-Key` returns the original order."""
    idempotent = idempotency.IdempotentRequest(
        principal.user_id, key, "POST /v1/checkout", body.model_dump() if body else {}
    )

    async def work() -> idempotency.Answer:
        order = await service.checkout(session, request.app.state.settings, principal)
        return idempotency.Answer(201, OrderOut.model_validate(order).model_dump(mode="json"))

    return (await idempotency.once(session, idempotent, work)).response()


@router.get("/v1/orders", response_model=OrderPage, summary="The customer's orders")
async def list_orders(
    principal: Customer,
    session: ReadSession,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> OrderPage:
    after = decode_cursor(cursor) if cursor else None
    orders = await service.list_orders(
        session, customer_id=principal.user_id, status=status_filter, after=after, limit=limit
    )
    return OrderPage.of(orders, limit)


@router.get("/v1/orders/{order_id}", response_model=OrderOut, summary="An order")
async def get_order(order_id: OrderId, principal: OrderReader, session: ReadSession) -> OrderOut:
    return await service.order_view(session, principal, order_id)


@router.get(
    "/v1/orders/{order_id}/events", response_model=list[OrderEventOut], summary="Order history"
)
async def order_events(
    order_id: OrderId, principal: OrderReader, session: ReadSession
) -> list[OrderEventOut]:
    rows = await service.events(session, principal, order_id)
    return [OrderEventOut.model_validate(e) for e in rows]


@router.post(
    "/v1/orders/{order_id}/cancel", response_model=OrderOut, summary="Cancel an unpaid order"
)
async def cancel_order(order_id: OrderId, principal: Customer, session: DbSession) -> OrderOut:
    """Only `pending_payment` orders; the reserved stock returns at once."""
    return OrderOut.model_validate(await service.cancel(session, principal, order_id))


@router.get(
    "/v1/vendor/orders", response_model=VendorOrderPage, summary="Orders with the vendor's products"
)
async def vendor_orders(
    principal: Vendor, session: ReadSession, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> VendorOrderPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await service.vendor_orders(session, principal, after=after, limit=limit)
    return VendorOrderPage.of(rows, limit)


@admin.get("/orders", response_model=OrderPage, summary="All orders")
async def admin_orders(
    principal: AnyOrderReader,
    session: ReadSession,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> OrderPage:
    after = decode_cursor(cursor) if cursor else None
    orders = await service.list_orders(
        session, customer_id=customer_id, status=status_filter, after=after, limit=limit
    )
    return OrderPage.of(orders, limit)


@admin.post(
    "/orders/{order_id}/fulfil", response_model=OrderOut, summary="Mark a paid order fulfilled"
)
async def fulfil_order(order_id: OrderId, principal: Fulfiller, session: DbSession) -> OrderOut:
    return OrderOut.model_validate(await service.fulfil(session, principal, order_id))
