"""Body size (413), content type (415) and Host allow-list (400)."""

from __future__ import annotations

from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tests.probes import install_probes


async def test_body_over_the_default_limit_is_413(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/large",
            content=b"x" * (100 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
    assert_problem(response, 413)


async def test_body_at_the_limit_is_accepted(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/large",
            content=b"x" * (100 * 1024),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200
    assert response.json() == {"size": 100 * 1024}


async def test_streamed_body_without_length_is_cut_at_the_limit(
    make_client: ClientFactory,
) -> None:
    async def chunks():
        for _ in range(200):
            yield b"y" * 1024

    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/large", content=chunks(), headers={"content-type": "application/json"}
        )
    assert_problem(response, 413)


async def test_route_groups_have_their_own_limit(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes, body_limits={"/v1/probe/large": 2048}) as client:
        small = await client.post(
            "/v1/probe/large", content=b"x" * 2048, headers={"content-type": "application/json"}
        )
        big = await client.post(
            "/v1/probe/large", content=b"x" * 2049, headers={"content-type": "application/json"}
        )
    assert small.status_code == 200
    assert_problem(big, 413)


async def test_non_json_body_on_a_json_route_is_415(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/json"):
            response = await client.post(
                "/v1/probe/echo", content=b'{"amount":1}', headers={"content-type": content_type}
            )
            assert_problem(response, 415)


async def test_missing_content_type_with_a_body_is_415(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post("/v1/probe/echo", content=b'{"amount": 1}')
    assert_problem(response, 415)


async def test_json_with_charset_parameter_is_accepted(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/echo",
            content=b'{"amount": 5, "currency": "NGN"}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 200
    assert response.json() == {"amount": 5, "currency": "NGN"}


async def test_unknown_host_header_is_rejected(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.get("/healthz", headers={"host": "evil.example"})
    assert_problem(response, 400)


async def test_allowed_host_with_port_is_accepted(make_client: ClientFactory) -> None:
    async with make_client(allowed_hosts=["api.shop.example"]) as client:
        response = await client.get(
            "http://api.shop.example:8443/healthz", headers={"host": "api.shop.example:8443"}
        )
    assert response.status_code == 200


async def test_wildcard_subdomain_host_rule(make_client: ClientFactory) -> None:
    async with make_client(allowed_hosts=["*.shop.example"]) as client:
        ok = await client.get("/healthz", headers={"host": "api.shop.example"})
        bad = await client.get("/healthz", headers={"host": "shop.example.evil.com"})
    assert ok.status_code == 200
    assert_problem(bad, 400)


async def test_nul_byte_in_path_or_query_is_400(make_client: ClientFactory) -> None:
    async with make_client() as client:
        for url in ("/v1/products/prd%00x", "/v1/products?q=a%00b", "/v1/orders/%00"):
            body = assert_problem(await client.get(url), 400)
            assert body["code"] == "invalid_characters"


async def test_nul_character_in_a_json_string_never_causes_a_500(
    accounts,
) -> None:
    account = await accounts.user()
    response = await accounts.client.patch(
        "/v1/me", json={"display_name": "bad\u0000name"}, headers=account.headers
    )
    # SQLite stores it; PostgreSQL cannot, and that is the client's error (400), not ours.
    assert response.status_code in (200, 400, 422)
