"""Arrange catalog, carts and orders through the real HTTP API."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx

from tests.accounts.helpers import Account, Accounts
from tillpay.accounts.models import Role


class Shop:
    """Drives the commerce API on top of :class:`Accounts`."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.client: httpx.AsyncClient = accounts.client

    async def vendor(self) -> Account:
        return await self.accounts.user(role=Role.VENDOR)

    async def customer(self, *, verified: bool = True) -> Account:
        return await self.accounts.user(verified=verified)

    async def product(
        self,
        vendor: Account,
        *,
        price: int = 1500,
        stock: int = 10,
        currency: str = "USD",
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "title": extra.pop("title", "Test product"),
            "currency": currency,
            "sku": extra.pop("sku", f"SKU-{secrets.token_hex(4)}"),
            "price_amount": price,
            "stock": stock,
            **extra,
        }
        response = await self.client.post("/v1/products", json=body, headers=vendor.headers)
        assert response.status_code == 201, response.text
        return response.json()

    async def add_to_cart(
        self, customer: Account, variant_id: str, quantity: int = 1
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/cart/lines",
            json={"variant_id": variant_id, "quantity": quantity},
            headers=customer.headers,
        )

    async def checkout(self, customer: Account, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/checkout",
            headers={**customer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def order(
        self, customer: Account, vendor: Account | None = None, **product: Any
    ) -> dict[str, Any]:
        """A pending_payment order of one product."""
        vendor = vendor or await self.vendor()
        item = await self.product(vendor, **product)
        added = await self.add_to_cart(customer, item["variants"][0]["id"])
        assert added.status_code == 200, added.text
        response = await self.checkout(customer)
        assert response.status_code == 201, response.text
        return response.json()
