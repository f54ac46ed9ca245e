"""Security headers (checklist §4.1) on every response, errors included."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.probes import install_probes

EXPECTED = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-permitted-cross-domain-policies": "none",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    assert "geolocation=()" in response.headers["permissions-policy"]
    assert "camera=()" in response.headers["permissions-policy"]
    for banner in ("server", "x-powered-by"):
        assert banner not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/nope", 404),
        ("DELETE", "/healthz", 405),
        ("TRACE", "/healthz", 405),
        ("POST", "/v1/probe/echo", 422),
        ("GET", "/v1/probe/boom", 500),
    ],
)
async def test_every_response_carries_the_security_headers(
    make_client: ClientFactory, method: str, path: str, status: int
) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert_security_headers(response)


async def test_json_responses_declare_utf8_charset(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.headers["content-type"] == "application/problem+json; charset=utf-8"
    ok = await client.get("/healthz")
    assert ok.headers["content-type"] == "application/json; charset=utf-8"


async def test_hsts_max_age_is_configurable_but_at_least_a_year(make_client: ClientFactory) -> None:
    async with make_client(hsts_max_age=31536000) as client:
        response = await client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
