"""Rate limiting over HTTP: 429 with Retry-After and RateLimit-* headers, keyed by the real
client IP (spoofed X-Forwarded-For from an untrusted peer changes nothing)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.kit.http.ratelimit import RateLimit


async def test_global_limit_answers_429_with_headers(make_client: ClientFactory) -> None:
    async with make_client(ratelimit_global="3/minute") as client:
        statuses = [(await client.get("/v1/x")).status_code for _ in range(3)]
        limited = await client.get("/v1/x")
    assert statuses == [404, 404, 404]
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-limit"] == "3"
    assert limited.headers["ratelimit-remaining"] == "0"


async def test_successful_responses_report_the_remaining_budget(
    make_client: ClientFactory,
) -> None:
    async with make_client(ratelimit_global="5/minute") as client:
        response = await client.get("/v1/x")
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"


async def test_spoofed_forwarded_for_does_not_reset_the_counter(
    make_client: ClientFactory,
) -> None:
    async with make_client(ratelimit_global="2/minute") as client:
        for i in range(2):
            await client.get("/v1/x", headers={"x-forwarded-for": f"203.0.113.{i}"})
        limited = await client.get("/v1/x", headers={"x-forwarded-for": "198.51.100.7"})
    assert limited.status_code == 429


async def test_trusted_proxy_forwarded_for_identifies_the_client(
    make_client: ClientFactory,
) -> None:
    async with make_client(
        client_ip="10.0.0.5", trusted_proxies=["10.0.0.5"], ratelimit_global="1/minute"
    ) as client:
        first = await client.get("/v1/x", headers={"x-forwarded-for": "203.0.113.1"})
        other_client = await client.get("/v1/x", headers={"x-forwarded-for": "203.0.113.2"})
        same_again = await client.get("/v1/x", headers={"x-forwarded-for": "203.0.113.1"})
    assert first.status_code == 404
    assert other_client.status_code == 404
    assert same_again.status_code == 429


async def test_operational_endpoints_are_exempt(make_client: ClientFactory) -> None:
    async with make_client(ratelimit_global="1/minute") as client:
        statuses = {(await client.get("/healthz")).status_code for _ in range(5)}
    assert statuses == {200}


def _named_policy_route(app: FastAPI) -> None:
    router = APIRouter()

    @router.post("/v1/probe/login", dependencies=[Depends(RateLimit("auth"))])
    async def login() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(router)


async def test_named_route_policy_limits_that_route(make_client: ClientFactory) -> None:
    async with make_client(
        setup=_named_policy_route, ratelimit_policies={"auth": "2/minute"}
    ) as client:
        ok = [(await client.post("/v1/probe/login")).status_code for _ in range(2)]
        limited = await client.post("/v1/probe/login")
        unrelated = await client.get("/healthz")
    assert ok == [200, 200]
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert unrelated.status_code == 200


async def test_unreachable_redis_fails_closed_by_default(make_client: ClientFactory) -> None:
    async with make_client(redis_url="redis://127.0.0.1:1/0") as client:
        response = await client.get("/v1/x")
    assert_problem(response, 429)


async def test_unreachable_redis_can_fail_open(make_client: ClientFactory) -> None:
    async with make_client(redis_url="redis://127.0.0.1:1/0", ratelimit_fail_open=True) as client:
        response = await client.get("/v1/x")
    assert response.status_code == 404
