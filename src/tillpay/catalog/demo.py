"""Demo catalog for `tillpay dev`: a demo vendor that cannot sign in, and a few products
in two currencies. Idempotent: existing SKUs are left alone."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import Role, User
from tillpay.catalog.models import Product, Variant
from tillpay.kit.db import utcnow
from tillpay.settings import Settings

DEMO_VENDOR_EMAIL = "demo-vendor@tillpay.invalid"

DemoVariant = tuple[str, str | None, int, int]
PRODUCTS: list[tuple[str, str, str, list[DemoVariant]]] = [
    ("Ankara tote bag", "Hand-made cotton tote.", "NGN", [("DEMO-TOTE-01", None, 1_250_000, 25)]),
    (
        "Shea butter, 250 g",
        "Unrefined, from northern Ghana.",
        "NGN",
        [("DEMO-SHEA-250", None, 450_000, 100)],
    ),
    (
        "Kente scarf",
        "Woven strip scarf.",
        "USD",
        [("DEMO-KENTE-S", "Short", 2_900, 10), ("DEMO-KENTE-L", "Long", 3_900, 5)],
    ),
    (
        "Last one in stock",
        "For trying out sold-out handling.",
        "USD",
        [("DEMO-LAST-1", None, 1_000, 1)],
    ),
]


async def load_catalog(session: AsyncSession, settings: Settings) -> None:
    """The demo vendor and products (run by :mod:`tillpay.demo`)."""
    vendor = (
        await session.execute(select(User).where(User.email == DEMO_VENDOR_EMAIL))
    ).scalar_one_or_none()
    if vendor is None:
        # No password anybody knows: "!" never matches an Argon2 or bcrypt hash.
        vendor = User(
            email=DEMO_VENDOR_EMAIL,
            password_hash="!" + secrets.token_hex(16),
            role=Role.VENDOR,
            display_name="Demo vendor",
            email_verified_at=utcnow(),
        )
        session.add(vendor)
        await session.flush()
    existing = set(
        (
            await session.execute(select(Variant.sku).where(Variant.vendor_key == vendor.id))
        ).scalars()
    )
    for title, description, currency, variants in PRODUCTS:
        if all(sku in existing for sku, *_ in variants):
            continue
        product = Product(
            vendor_id=vendor.id, title=title, description=description, currency=currency
        )
        session.add(product)
        await session.flush()
        for sku, variant_title, price, stock in variants:
            session.add(
                Variant(
                    product_id=product.id,
                    vendor_key=vendor.id,
                    sku=sku,
                    title=variant_title,
                    price_amount=price,
                    stock=stock,
                )
            )
