"""Request ids: generated, or accepted from a trusted proxy only; echoed in responses."""

from __future__ import annotations

import re

from tests.conftest import ClientFactory


async def test_a_request_id_is_generated_and_echoed(make_client: ClientFactory) -> None:
    async with make_client() as client:
        first = await client.get("/healthz")
        second = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_client_supplied_request_id_is_ignored_from_untrusted_peers(
    make_client: ClientFactory,
) -> None:
    async with make_client() as client:
        response = await client.get("/healthz", headers={"x-request-id": "attacker-chosen-id"})
    assert response.headers["x-request-id"] != "attacker-chosen-id"


async def test_trusted_proxy_request_id_is_kept(make_client: ClientFactory) -> None:
    async with make_client(client_ip="10.0.0.5", trusted_proxies=["10.0.0.0/24"]) as client:
        response = await client.get("/healthz", headers={"x-request-id": "lb-1234567890"})
    assert response.headers["x-request-id"] == "lb-1234567890"


async def test_malformed_request_id_from_a_trusted_proxy_is_replaced(
    make_client: ClientFactory,
) -> None:
    async with make_client(client_ip="10.0.0.5", trusted_proxies=["10.0.0.0/24"]) as client:
        response = await client.get("/healthz", headers={"x-request-id": "bad\tid<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_error_responses_carry_the_request_id(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.get("/missing")
    assert response.json()["instance"] == f"urn:request:{response.headers['x-request-id']}"
