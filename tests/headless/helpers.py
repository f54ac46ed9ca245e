"""Test-side helpers for headless payments: a shop backend's API keys and requests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.accounts.helpers import Account
from tests.credentials.helpers import create_api_key, key_headers

ALL_SCOPES = ["payments:read", "payments:write", "refunds:write"]


def body(reference: str | None = None, **over: Any) -> dict[str, Any]:
    return {
        "amount": 2599,
        "currency": "USD",
        "reference": f"order-{uuid.uuid4().hex[:12]}" if reference is None else reference,
        "description": "Order at Acme",
        "customer": {"email": "ada@example.com", "external_id": "cus_1"},
        "provider": "sandbox",
        "metadata": {"cart_id": "c_1"},
        **over,
    }


class ShopBackend:
    """One merchant's backend calling tillpay with its API key."""

    def __init__(self, client: httpx.AsyncClient, secret: str, merchant: str) -> None:
        self.client = client
        self.secret = secret
        self.merchant = merchant

    @classmethod
    async def make(
        cls,
        client: httpx.AsyncClient,
        admin: Account,
        merchant: str = "acme",
        scopes: list[str] | None = None,
    ) -> ShopBackend:
        key = await create_api_key(client, admin, scopes=scopes or ALL_SCOPES, merchant=merchant)
        return cls(client, key["secret"], merchant)

    def headers(self, **more: str) -> dict[str, str]:
        return key_headers(self.secret, **more)

    async def create(self, payload: dict[str, Any], *, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/payments",
            json=payload,
            headers=self.headers(**{"Idempotency-Key": key or str(uuid.uuid4())}),
        )

    async def get(self, payment_id: str) -> httpx.Response:
        return await self.client.get(f"/v1/payments/{payment_id}", headers=self.headers())

    async def list(self, **params: str) -> httpx.Response:
        return await self.client.get("/v1/payments", params=params, headers=self.headers())

    async def refund(
        self, payment_id: str, *, key: str | None = None, **payload: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/payments/{payment_id}/refunds",
            json={"reason": "requested_by_customer", **payload},
            headers=self.headers(**{"Idempotency-Key": key or str(uuid.uuid4())}),
        )

    async def cancel(self, payment_id: str) -> httpx.Response:
        return await self.client.post(f"/v1/payments/{payment_id}/cancel", headers=self.headers())
