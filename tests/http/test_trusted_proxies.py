"""`TILLPAY_TRUSTED_PROXIES`: every entry is checked at start-up; `*` trusts every peer."""

from __future__ import annotations

from tests.conftest import ClientFactory


async def test_wildcard_trusted_proxies_serve_health_checks_with_security_headers(
    make_client: ClientFactory,
) -> None:
    async with make_client(client_ip="10.9.8.7", trusted_proxies=["*"]) as client:
        response = await client.get("/healthz", headers={"x-request-id": "lb-1234567890"})
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"] == "lb-1234567890"


async def test_wildcard_trusted_proxies_take_the_client_from_x_forwarded_for(
    make_client: ClientFactory,
) -> None:
    async with make_client(
        client_ip="10.9.8.7", trusted_proxies=["*"], ratelimit_global="1/minute"
    ) as client:
        first = await client.get("/missing", headers={"x-forwarded-for": "198.51.100.1"})
        other_client = await client.get("/missing", headers={"x-forwarded-for": "198.51.100.2"})
        same_client = await client.get("/missing", headers={"x-forwarded-for": "198.51.100.1"})
    assert (first.status_code, other_client.status_code, same_client.status_code) == (
        404,
        404,
        429,
    )
