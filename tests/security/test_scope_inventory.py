"""Machine credentials reach only the routes that name their scopes (driven by the OpenAPI
document, which derives ``security`` and ``x-tillpay-scopes`` from each route's own
dependencies). Every authenticated route is either listed in :data:`SCOPED` with the
scopes it needs, or user-only: a new route a machine may call fails this test until it is
listed here on purpose."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.accounts.helpers import Accounts
from tests.credentials.helpers import create_api_key, key_headers
from tests.http.test_errors import assert_problem
from tests.security.test_route_inventory import _concrete
from tillpay.accounts.permissions import Scope

WM = ["webhooks:manage"]
SCOPED: dict[tuple[str, str], list[str]] = {
    ("GET", "/v1/orders/{order_id}"): ["orders:read"],
    ("GET", "/v1/orders/{order_id}/events"): ["orders:read"],
    ("GET", "/v1/admin/orders"): ["orders:read"],
    ("GET", "/v1/events"): ["events:read"],
    ("POST", "/v1/payments"): ["payments:write"],
    ("GET", "/v1/payments"): ["payments:read"],
    ("GET", "/v1/payments/{payment_id}"): ["payments:read"],
    ("POST", "/v1/payments/{payment_id}/cancel"): ["payments:write"],
    ("POST", "/v1/payments/{payment_id}/refunds"): ["refunds:write"],
    ("GET", "/v1/payments/{payment_id}/refunds"): ["payments:read"],
    ("GET", "/v1/admin/event-types"): WM,
    ("GET", "/v1/admin/webhook-endpoints"): WM,
    ("POST", "/v1/admin/webhook-endpoints"): WM,
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}"): WM,
    ("PATCH", "/v1/admin/webhook-endpoints/{endpoint_id}"): WM,
    ("DELETE", "/v1/admin/webhook-endpoints/{endpoint_id}"): WM,
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret"): WM,
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}/deliveries"): WM,
    ("POST", "/v1/admin/webhook-endpoints/deliveries/{delivery_id}/redeliver"): WM,
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/recover"): WM,
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/test"): WM,
    ("GET", "/v1/admin/event-hub/dead-letters"): WM,
    ("POST", "/v1/admin/event-hub/dead-letters/replay"): WM,
}
ALL = sorted(s.value for s in Scope)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


async def _call(client: httpx.AsyncClient, method: str, path: str, secret: str) -> httpx.Response:
    return await client.request(
        method,
        _concrete(path),
        json={} if method in ("POST", "PUT", "PATCH") else None,
        headers=key_headers(secret, **{"Idempotency-Key": str(uuid.uuid4())}),
    )


async def test_every_machine_callable_route_is_listed_with_its_scopes(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    declared = {
        (m, p): op["x-tillpay-scopes"]
        for m, p, op in _operations(schema)
        if "x-tillpay-scopes" in op
    }
    assert declared == SCOPED
    for method, path, operation in _operations(schema):
        if "security" not in operation:
            continue
        schemes = {name for requirement in operation["security"] for name in requirement}
        expected = (
            {"userSession", "apiKey", "serviceToken"}
            if (method, path) in SCOPED
            else {"userSession"}
        )
        assert schemes == expected, (method, path)
    assert set(schema["components"]["securitySchemes"]) == {"userSession", "apiKey", "serviceToken"}


async def test_a_key_with_every_other_scope_is_refused_on_each_route(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    schema = (await client.get("/openapi.json")).json()
    keys: dict[tuple[str, ...], str] = {}
    checked = 0
    for method, path, operation in _operations(schema):
        if "security" not in operation:
            continue
        needed = operation.get("x-tillpay-scopes", [])
        others = tuple(s for s in ALL if s not in needed)
        if others not in keys:
            keys[others] = (await create_api_key(client, admin, scopes=list(others)))["secret"]
        response = await _call(client, method, path, keys[others])
        assert response.status_code == 403, (method, path, response.text)
        assert_problem(response, 403)
        code = response.json()["code"]
        assert code == ("insufficient_scope" if needed else "user_only"), (method, path, code)
        checked += 1
    assert checked > 60


async def test_a_key_with_the_named_scopes_gets_past_authorization(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    schema = (await client.get("/openapi.json")).json()
    for method, path, operation in _operations(schema):
        needed = operation.get("x-tillpay-scopes")
        if needed is None:
            continue
        secret = (await create_api_key(client, admin, scopes=needed))["secret"]
        response = await _call(client, method, path, secret)
        # Unknown ids and empty bodies: 404/422, but never refused for who is calling.
        assert response.status_code not in (401, 403), (method, path, response.text)
