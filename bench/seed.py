"""Seed the bench database: tillpay's own models in-process for the bulk (users,
products), tillpay's API for what must go through its rules (sign-in, carts, checkout)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

import tillpay.models  # noqa: F401 - every mapped class, for the relationships
from tillpay.accounts.models import Role, User
from tillpay.catalog.models import Product, Variant
from tillpay.kit.config import DatabaseConfig
from tillpay.kit.db import Database, utcnow
from tillpay.kit.passwords import PasswordHasher

PASSWORD = "bench passphrase " + secrets.token_hex(8)
HOST = {"host": "localhost"}


@dataclass
class Customer:
    email: str
    token: str = ""
    user_id: str = ""
    order_ids: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", **HOST}


@dataclass
class Seeded:
    customers: list[Customer]
    variant_ids: list[str]
    product_id: str
    products: int


async def seed_rows(database_url: str, *, products: int, customers: int) -> Seeded:
    """Insert a vendor, ``products`` products (one variant each, ample stock) and
    ``customers`` verified customers sharing one Argon2 hash (production cost)."""
    database = Database.from_settings(DatabaseConfig(url=database_url))
    password_hash = await PasswordHasher().hash(PASSWORD)
    tag = secrets.token_hex(3)
    now = utcnow()
    try:
        async with database.session() as session, session.begin():
            vendor = User(
                email=f"vendor.{tag}@bench.example",
                password_hash=password_hash,
                role=Role.VENDOR,
                email_verified_at=now,
            )
            session.add(vendor)
            people = [
                User(
                    email=f"customer{i}.{tag}@bench.example",
                    password_hash=password_hash,
                    role=Role.CUSTOMER,
                    email_verified_at=now,
                )
                for i in range(customers)
            ]
            session.add_all(people)
            await session.flush()
            rows = []
            for i in range(products):
                product = Product(
                    vendor_id=vendor.id,
                    title=f"Bench product {i}",
                    description="A product seeded by the benchmark.",
                    currency="USD",
                    attributes={"seq": i},
                )
                product.variants = [
                    Variant(
                        vendor_key=vendor.id,
                        sku=f"BENCH-{tag}-{i}",
                        price_amount=500 + i,
                        stock=1_000_000,
                    )
                ]
                rows.append(product)
            session.add_all(rows)
            await session.flush()
            variant_ids = [p.variants[0].id for p in rows]
            return Seeded(
                customers=[Customer(email=p.email, user_id=p.id) for p in people],
                variant_ids=variant_ids,
                product_id=rows[0].id,
                products=products,
            )
    finally:
        await database.engine.dispose()


async def login(client: httpx.AsyncClient, customer: Customer) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": customer.email, "password": PASSWORD}, headers=HOST
    )
    response.raise_for_status()
    customer.token = response.json()["access_token"]


async def place_order(
    client: httpx.AsyncClient, customer: Customer, variant_id: str, quantity: int = 1
) -> dict[str, Any]:
    """Cart → checkout: a pending_payment order of one line."""
    added = await client.post(
        "/v1/cart/lines",
        json={"variant_id": variant_id, "quantity": quantity},
        headers=customer.headers,
    )
    added.raise_for_status()
    response = await client.post(
        "/v1/checkout", headers={**customer.headers, "idempotency-key": str(uuid.uuid4())}
    )
    if response.status_code != 201:
        raise RuntimeError(f"checkout answered {response.status_code}: {response.text[:300]}")
    order: dict[str, Any] = response.json()
    customer.order_ids.append(order["id"])
    return order


async def seed_api(
    base: str,
    seeded: Seeded,
    *,
    sign_in: list[Customer],
    with_orders: list[Customer],
    orders_each: int,
    concurrency: int = 4,
) -> None:
    """Sign ``sign_in`` in and give each of ``with_orders`` (signed in too) ``orders_each``
    orders."""
    semaphore = asyncio.Semaphore(concurrency)
    ordering = {id(c) for c in with_orders}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(index: int, customer: Customer) -> None:
            async with semaphore:
                await login(client, customer)
                for n in range(orders_each if id(customer) in ordering else 0):
                    variant = seeded.variant_ids[(index * 7 + n) % len(seeded.variant_ids)]
                    await place_order(client, customer, variant)

        everyone = [*sign_in, *(c for c in with_orders if all(c is not x for x in sign_in))]
        await asyncio.gather(*(one(i, c) for i, c in enumerate(everyone)))
