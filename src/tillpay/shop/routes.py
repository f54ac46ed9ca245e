"""The storefront's catalog and cart pages: thin routes over the services the API's
``/v1/products`` and ``/v1/cart`` routes call (same rules, same refusals)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from tillpay.accounts.principal import Principal
from tillpay.carts import service as carts
from tillpay.catalog import service as catalog
from tillpay.catalog.routes import ID_PATTERN
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.pagination import decode_cursor, next_cursor
from tillpay.shop.session import MaybeShopper, Shopper
from tillpay.web import errors
from tillpay.web.templating import NOTICES, redirect, render

router = APIRouter(prefix="/shop", include_in_schema=False)

PAGE_SIZE = 24
ProductId = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
LineId = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
Quantity = Annotated[int, Form(ge=1, le=10_000)]

NOTICES.update(
    {
        "shop_added": "Added to your cart.",
        "shop_updated": "Cart updated.",
        "shop_removed": "Removed from your cart.",
    }
)

# Why checkout would refuse the cart (``CartView.not_ready_reasons``), for the shopper.
NOT_READY = {
    "empty": "Your cart is empty.",
    "unavailable": "An item is no longer available: remove it to check out.",
    "out_of_stock": "An item has fewer units in stock than you asked for.",
    "total_too_large": "The total is larger than one payment may be.",
}


def page(
    request: Request,
    shopper: Principal | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render a shop page (a template extending ``shop/layout.html``)."""
    values: dict[str, Any] = {
        "shopper": shopper,
        "shopper_email": getattr(request.state, "shop_email", ""),
        "dev_mailbox": request.app.state.settings.environment == "development",
    }
    values.update(context or {})
    return render(request, template, values, status)


@router.get("")
async def products(
    request: Request,
    session: ReadSession,
    shopper: MaybeShopper,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    filters = catalog.ProductFilter(text=q or None)
    found = await catalog.list_products(
        session, filters, after=decode_cursor(after) if after else None, limit=PAGE_SIZE
    )
    context = {
        "products": found[:PAGE_SIZE],
        "q": q or "",
        "next": next_cursor(found, PAGE_SIZE),
    }
    return page(request, shopper, "shop/products.html", context)


@router.get("/products/{product_id}")
async def product(
    product_id: ProductId, request: Request, session: ReadSession, shopper: MaybeShopper
) -> Response:
    found = await catalog.get_product(session, None, product_id)
    variants = [v for v in found.variants if v.active]
    max_quantity = request.app.state.settings.cart_line_max_quantity
    context = {"product": found, "variants": variants, "max_quantity": max_quantity}
    return page(request, shopper, "shop/product.html", context)


async def _cart_page(
    request: Request, session: Any, shopper: Principal, error: str | None = None
) -> Response:
    view = await carts.view_cart(session, shopper)
    context = {
        "cart": view,
        "reasons": [NOT_READY.get(r, r) for r in view.not_ready_reasons if r != "empty"],
        "error": error,
        "max_quantity": request.app.state.settings.cart_line_max_quantity,
        # The checkout form's idempotency key: a double submit makes one order.
        "checkout_key": secrets.token_urlsafe(24),
    }
    return page(request, shopper, "shop/cart.html", context)


@router.get("/cart")
async def cart(request: Request, session: DbSession, shopper: Shopper) -> Response:
    # DbSession, not ReadSession: the cart is created on first use.
    return await _cart_page(request, session, shopper)


@router.post("/cart/lines")
async def add_line(
    request: Request,
    session: DbSession,
    shopper: Shopper,
    variant_id: Annotated[str, Form(max_length=40, pattern=ID_PATTERN)],
    quantity: Quantity = 1,
) -> Response:
    settings = request.app.state.settings
    errors.on_error(request, lambda e: _error_page(request, shopper, e.detail))
    await carts.add_line(session, settings, shopper, variant_id=variant_id, quantity=quantity)
    return redirect(request, "/shop/cart", notice="shop_added")


@router.post("/cart/lines/{line_id}")
async def set_quantity(
    line_id: LineId, request: Request, session: DbSession, shopper: Shopper, quantity: Quantity
) -> Response:
    settings = request.app.state.settings
    errors.on_error(request, lambda e: _error_page(request, shopper, e.detail))
    await carts.set_quantity(session, settings, shopper, line_id, quantity)
    return redirect(request, "/shop/cart", notice="shop_updated")


@router.post("/cart/lines/{line_id}/remove")
async def remove_line(
    line_id: LineId, request: Request, session: DbSession, shopper: Shopper
) -> Response:
    await carts.remove_line(session, shopper, line_id)
    return redirect(request, "/shop/cart", notice="shop_removed")


def _error_page(request: Request, shopper: Principal, detail: str) -> Response:
    context = {"title": "That did not work", "detail": detail}
    return page(request, shopper, "shop/problem.html", context)
