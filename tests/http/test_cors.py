"""CORS: an explicit allow-list; foreign and `null` origins are never reflected."""

from __future__ import annotations

from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem

SHOP = "https://shop.example"


async def test_allowed_origin_is_answered(make_client: ClientFactory) -> None:
    async with make_client(cors_allow_origins=[SHOP]) as client:
        response = await client.get("/healthz", headers={"origin": SHOP})
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-credentials" not in response.headers


async def test_foreign_origin_is_not_reflected(make_client: ClientFactory) -> None:
    async with make_client(cors_allow_origins=[SHOP]) as client:
        response = await client.get("/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_null_origin_is_not_reflected(make_client: ClientFactory) -> None:
    async with make_client(cors_allow_origins=[SHOP]) as client:
        response = await client.get("/healthz", headers={"origin": "null"})
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_allowed_origin(make_client: ClientFactory) -> None:
    async with make_client(cors_allow_origins=[SHOP], cors_allow_credentials=True) as client:
        response = await client.options(
            "/v1/anything",
            headers={
                "origin": SHOP,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, idempotency-key",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "*" not in response.headers["access-control-allow-origin"]


async def test_preflight_from_foreign_origin_is_a_problem(make_client: ClientFactory) -> None:
    async with make_client(cors_allow_origins=[SHOP]) as client:
        response = await client.options(
            "/v1/anything",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert_problem(response, 400)
    assert "access-control-allow-origin" not in response.headers


async def test_no_origins_configured_means_no_cors(client) -> None:
    response = await client.get("/healthz", headers={"origin": SHOP})
    assert "access-control-allow-origin" not in response.headers
