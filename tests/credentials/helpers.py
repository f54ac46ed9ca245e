"""Test-side helpers for machine credentials."""

from __future__ import annotations

from typing import Any

import httpx

from tests.accounts.helpers import Account


async def create_api_key(
    client: httpx.AsyncClient,
    admin: Account,
    *,
    scopes: list[str],
    merchant: str = "default",
    **extra: Any,
) -> dict[str, Any]:
    """An API key created through the admin API (``admin``: ``Accounts.admin()``); its
    secret is ``["secret"]``."""
    response = await client.post(
        "/v1/admin/api-keys",
        json={"name": f"test {merchant}", "scopes": scopes, "merchant": merchant, **extra},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def key_headers(secret: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **more}
