"""Catalog rules: who may create and change products, listing and search, stock changes.

Ownership: a vendor changes only their own products (others answer 404, as if absent);
admins change any; inactive products are visible only to their owner and admins.
"""

from __future__ import annotations

from dataclasses import dataclass

import nh3
from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.catalog.models import Product, Variant
from tillpay.catalog.schemas import ProductCreate, ProductUpdate, VariantIn, VariantUpdate
from tillpay.kit.errors import Conflict, NotFound

PLATFORM_VENDOR_KEY = "platform"


def clean_text(value: str) -> str:
    """Plain text: every tag removed (script and style with their content), `<>&` escaped."""
    return nh3.clean(value, tags=set(), attributes={}).strip()


def _vendor_key(vendor_id: str | None) -> str:
    return vendor_id or PLATFORM_VENDOR_KEY


def can_manage(principal: Principal, product: Product, *, explain: bool = True) -> bool:
    """Own products with CATALOG_WRITE_OWN, any with CATALOG_WRITE_ANY. With ``explain``,
    an admin without 2FA managing someone else's product gets the 2FA 403."""
    if Permission.CATALOG_WRITE_OWN in principal.permissions and (
        product.vendor_id == principal.user_id
    ):
        return True
    if not explain:
        return Permission.CATALOG_WRITE_ANY in principal.permissions
    return principal.can(Permission.CATALOG_WRITE_ANY)


async def _flush_or_conflict(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("A variant with this SKU already exists.", code="sku_taken") from None


async def create_product(
    session: AsyncSession, principal: Principal, body: ProductCreate
) -> Product:
    """Vendors create products they own; admins create platform products."""
    # Platform products (no vendor) are an admin power: CATALOG_WRITE_ANY, with 2FA.
    vendor_id = None if principal.can(Permission.CATALOG_WRITE_ANY) else principal.user_id
    product = Product(
        vendor_id=vendor_id,
        title=clean_text(body.title),
        description=clean_text(body.description),
        currency=body.currency,
        image_urls=[str(u) for u in body.image_urls],
        attributes=dict(body.attributes),
    )
    session.add(product)
    await session.flush()
    for spec in body.variant_specs():
        session.add(_variant(product, spec))
    await _flush_or_conflict(session)
    await record(
        session,
        principal.actor(),
        "catalog.product_created",
        target_type="product",
        target_id=product.id,
    )
    await session.refresh(product, ["variants"])
    return product


def _variant(product: Product, spec: VariantIn) -> Variant:
    return Variant(
        product_id=product.id,
        vendor_key=_vendor_key(product.vendor_id),
        sku=spec.sku,
        title=clean_text(spec.title) if spec.title else None,
        price_amount=spec.price_amount,
        stock=spec.stock,
        attributes=dict(spec.attributes),
    )


async def _product_for_write(
    session: AsyncSession, principal: Principal, product_id: str
) -> Product:
    product = (
        await session.execute(select(Product).where(Product.id == product_id).with_for_update())
    ).scalar_one_or_none()
    if product is None or not can_manage(principal, product):
        raise NotFound("No such product.")
    return product


async def update_product(
    session: AsyncSession, principal: Principal, product_id: str, body: ProductUpdate
) -> Product:
    product = await _product_for_write(session, principal, product_id)
    changes = body.model_dump(exclude_unset=True)
    if "title" in changes and body.title is not None:
        product.title = clean_text(body.title)
    if "description" in changes and body.description is not None:
        product.description = clean_text(body.description)
    if body.image_urls is not None:
        product.image_urls = [str(u) for u in body.image_urls]
    if body.attributes is not None:
        product.attributes = dict(body.attributes)
    if body.active is not None:
        product.active = body.active
    await record(
        session,
        principal.actor(),
        "catalog.product_updated",
        target_type="product",
        target_id=product.id,
        details={"fields": sorted(changes)},
    )
    await session.flush()
    await session.refresh(product, ["variants", "updated_at"])
    return product


async def add_variant(
    session: AsyncSession, principal: Principal, product_id: str, spec: VariantIn
) -> Product:
    product = await _product_for_write(session, principal, product_id)
    session.add(_variant(product, spec))
    await _flush_or_conflict(session)
    await record(
        session,
        principal.actor(),
        "catalog.variant_added",
        target_type="product",
        target_id=product.id,
    )
    await session.refresh(product, ["variants"])
    return product


async def update_variant(
    session: AsyncSession,
    principal: Principal,
    product_id: str,
    variant_id: str,
    body: VariantUpdate,
) -> Product:
    """Change a variant. ``stock`` sets the units available for new orders (units already
    reserved by pending orders are not included)."""
    product = await _product_for_write(session, principal, product_id)
    variant = (
        await session.execute(
            select(Variant)
            .where(Variant.id == variant_id, Variant.product_id == product.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if variant is None:
        raise NotFound("No such variant.")
    changes = body.model_dump(exclude_unset=True)
    if body.title is not None:
        variant.title = clean_text(body.title)
    if body.price_amount is not None:
        variant.price_amount = body.price_amount
    if body.stock is not None:
        variant.stock = body.stock
    if body.active is not None:
        variant.active = body.active
    if body.attributes is not None:
        variant.attributes = dict(body.attributes)
    await record(
        session,
        principal.actor(),
        "catalog.variant_updated",
        target_type="variant",
        target_id=variant.id,
        details={"fields": sorted(changes)},
    )
    await session.flush()
    await session.refresh(product, ["variants", "updated_at"])
    return product


async def get_product(
    session: AsyncSession, principal: Principal | None, product_id: str
) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise NotFound("No such product.")
    if not product.active and (
        principal is None or not can_manage(principal, product, explain=False)
    ):
        raise NotFound("No such product.")
    return product


@dataclass(frozen=True)
class ProductFilter:
    vendor_id: str | None = None
    currency: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    text: str | None = None
    include_inactive: bool = False


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_products(
    session: AsyncSession, filters: ProductFilter, *, after: str | None, limit: int
) -> list[Product]:
    """Keyset-paginated listing ordered by id (stable under inserts)."""
    query = select(Product).order_by(Product.id).limit(limit + 1)
    if not filters.include_inactive:
        query = query.where(Product.active.is_(True))
    if filters.vendor_id is not None:
        query = query.where(Product.vendor_id == filters.vendor_id)
    if filters.currency is not None:
        query = query.where(Product.currency == filters.currency)
    if filters.min_price is not None or filters.max_price is not None:
        condition = Variant.product_id == Product.id
        if not filters.include_inactive:
            condition = condition & Variant.active.is_(True)
        if filters.min_price is not None:
            condition = condition & (Variant.price_amount >= filters.min_price)
        if filters.max_price is not None:
            condition = condition & (Variant.price_amount <= filters.max_price)
        query = query.where(exists().where(condition))
    if filters.text:
        pattern = _like(filters.text)
        query = query.where(
            or_(
                func.lower(Product.title).like(pattern, escape="\\"),
                func.lower(Product.description).like(pattern, escape="\\"),
            )
        )
    if after is not None:
        query = query.where(Product.id > after)
    # The page and its variants in one statement (SQLAlchemy limits the products in a
    # subquery): one round trip instead of two.
    query = query.options(joinedload(Product.variants))
    return list((await session.execute(query)).unique().scalars())
