"""Catalog HTTP routes. Listing and detail are public on purpose; changes need the
vendor's own products or an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.catalog import service
from tillpay.catalog.schemas import (
    ProductCreate,
    ProductOut,
    ProductPage,
    ProductUpdate,
    VariantIn,
    VariantUpdate,
)
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.money import CurrencyCode
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor

router = APIRouter(tags=["catalog"])

# Ids are ASCII word characters: anything else (a NUL byte makes PostgreSQL fail the
# query) is a 422 before it reaches the database.
ID_PATTERN = r"^[A-Za-z0-9_]+$"
ProductId = Annotated[
    str, Path(max_length=40, pattern=ID_PATTERN, examples=["prd_01JD3XK5Q6R7S8T9V0W1X2Y3Z4"])
]
VariantId = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
Writer = Annotated[Principal, Depends(require_permission(Permission.CATALOG_WRITE_OWN))]


@router.get("/v1/products", response_model=ProductPage, summary="List and search products")
async def list_products(
    session: ReadSession,
    vendor_id: Annotated[str | None, Query(max_length=40, pattern=ID_PATTERN)] = None,
    currency: CurrencyCode | None = None,
    min_price: Annotated[int | None, Query(ge=0, le=2**53 - 1)] = None,
    max_price: Annotated[int | None, Query(ge=0, le=2**53 - 1)] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ProductPage:
    """Active products only, ordered by id; `next_cursor` continues the listing."""
    filters = service.ProductFilter(
        vendor_id=vendor_id, currency=currency, min_price=min_price, max_price=max_price, text=q
    )
    after = decode_cursor(cursor) if cursor else None
    return ProductPage.of(
        await service.list_products(session, filters, after=after, limit=limit), limit
    )


@router.get("/v1/products/{product_id}", response_model=ProductOut, summary="A product")
async def get_product(product_id: ProductId, session: ReadSession) -> ProductOut:
    return ProductOut.model_validate(await service.get_product(session, None, product_id))


@router.get("/v1/vendor/products", response_model=ProductPage, summary="The vendor's own products")
async def vendor_products(
    principal: Writer,
    session: ReadSession,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ProductPage:
    """Including inactive ones."""
    filters = service.ProductFilter(vendor_id=principal.user_id, include_inactive=True)
    after = decode_cursor(cursor) if cursor else None
    return ProductPage.of(
        await service.list_products(session, filters, after=after, limit=limit), limit
    )


@router.post(
    "/v1/products",
    response_model=ProductOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a product",
)
async def create_product(body: ProductCreate, principal: Writer, session: DbSession) -> ProductOut:
    """Vendors own what they create; `vendor_id`, prices as floats or strings are refused."""
    return ProductOut.model_validate(await service.create_product(session, principal, body))


@router.patch("/v1/products/{product_id}", response_model=ProductOut, summary="Change a product")
async def update_product(
    product_id: ProductId, body: ProductUpdate, principal: Writer, session: DbSession
) -> ProductOut:
    """`active: false` deactivates (it disappears from listings and carts flag it)."""
    return ProductOut.model_validate(
        await service.update_product(session, principal, product_id, body)
    )


@router.post(
    "/v1/products/{product_id}/variants",
    response_model=ProductOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a variant",
)
async def add_variant(
    product_id: ProductId, body: VariantIn, principal: Writer, session: DbSession
) -> ProductOut:
    return ProductOut.model_validate(
        await service.add_variant(session, principal, product_id, body)
    )


@router.patch(
    "/v1/products/{product_id}/variants/{variant_id}",
    response_model=ProductOut,
    summary="Change a variant's price, stock or status",
)
async def update_variant(
    product_id: ProductId,
    variant_id: VariantId,
    body: VariantUpdate,
    principal: Writer,
    session: DbSession,
) -> ProductOut:
    product = await service.update_variant(session, principal, product_id, variant_id, body)
    return ProductOut.model_validate(product)
