"""Cart routes: the signed-in customer's one cart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.carts import service
from tillpay.carts.schemas import CartOut, LineIn, QuantityIn
from tillpay.kit.db import DbSession

router = APIRouter(prefix="/v1/cart", tags=["cart"])
Shopper = Annotated[Principal, Depends(require_permission(Permission.CART_USE))]
LineId = Annotated[str, Path(max_length=40)]


@router.get("", response_model=CartOut, summary="The cart")
async def get_cart(principal: Shopper, session: DbSession) -> CartOut:
    """Current prices; lines are flagged when the price changed or the item is unavailable."""
    return CartOut.model_validate(await service.view_cart(session, principal))


@router.post("/lines", response_model=CartOut, summary="Add an item")
async def add_line(
    body: LineIn, request: Request, principal: Shopper, session: DbSession
) -> CartOut:
    """Adding an item priced in another currency than the cart's is a 409."""
    cart = await service.add_line(
        session,
        request.app.state.settings,
        principal,
        variant_id=body.variant_id,
        quantity=body.quantity,
    )
    return CartOut.model_validate(cart)


@router.patch("/lines/{line_id}", response_model=CartOut, summary="Change a quantity")
async def set_quantity(
    line_id: LineId, body: QuantityIn, request: Request, principal: Shopper, session: DbSession
) -> CartOut:
    cart = await service.set_quantity(
        session, request.app.state.settings, principal, line_id, body.quantity
    )
    return CartOut.model_validate(cart)


@router.delete("/lines/{line_id}", response_model=CartOut, summary="Remove an item")
async def remove_line(line_id: LineId, principal: Shopper, session: DbSession) -> CartOut:
    return CartOut.model_validate(await service.remove_line(session, principal, line_id))


@router.delete("", response_model=CartOut, summary="Empty the cart")
async def clear_cart(principal: Shopper, session: DbSession) -> CartOut:
    return CartOut.model_validate(await service.empty_cart(session, principal))
