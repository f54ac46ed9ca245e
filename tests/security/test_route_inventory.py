"""Every route in the OpenAPI document is authenticated unless it is public on purpose
(security-checklist item 34). New routes are covered automatically: a route that is
neither authenticated nor on the public list fails this test."""

from __future__ import annotations

import re

import httpx

from tests.http.test_errors import assert_problem

# Public on purpose, each for a reason.
PUBLIC = {
    ("GET", "/healthz"),  # liveness
    ("GET", "/readyz"),  # readiness (no internals exposed)
    ("GET", "/.well-known/jwks.json"),  # public keys
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/login/mfa"),  # authenticated by the MFA-pending token in the body
    ("POST", "/v1/auth/refresh"),  # authenticated by the refresh token
    ("POST", "/v1/auth/verify-email"),  # authenticated by the emailed token
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),  # authenticated by the emailed token
    ("GET", "/v1/products"),  # the public catalog
    ("GET", "/v1/products/{product_id}"),
    ("GET", "/v1/payments/providers"),
    ("GET", "/v1/payments/{payment_id}/return"),  # browser return; syncs server-side only
    ("POST", "/v1/webhooks/{provider}"),  # authenticated by the provider's signature
}
# Provider-specific public callbacks (verified by their own signatures).
PUBLIC_PATTERNS = [re.compile(r"^/v1/payments/\{payment_id\}/\w+/callback$")]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "xyz_01JD3XK5Q6R7S8T9V0W1X2Y3Z4", path)


async def test_every_private_route_requires_a_token(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    checked = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            key = (method.upper(), path)
            if key in PUBLIC or any(p.match(path) for p in PUBLIC_PATTERNS):
                continue
            response = await client.request(
                method.upper(),
                _concrete(path),
                json={} if method.upper() in ("POST", "PUT", "PATCH") else None,
                headers={"Idempotency-Key": "inventory-check"},
            )
            assert response.status_code == 401, (key, response.status_code, response.text)
            assert_problem(response, 401)
            checked += 1
    assert checked > 30


async def test_garbage_tokens_are_refused_everywhere(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        for method in operations:
            key = (method.upper(), path)
            if key in PUBLIC or any(p.match(path) for p in PUBLIC_PATTERNS):
                continue
            response = await client.request(
                method.upper(),
                _concrete(path),
                json={} if method.upper() in ("POST", "PUT", "PATCH") else None,
                headers={"Authorization": "Bearer not.a.jwt", "Idempotency-Key": "x-1"},
            )
            assert response.status_code == 401, (key, response.status_code)


async def test_public_list_only_names_routes_that_exist(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    existing = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert existing >= PUBLIC
