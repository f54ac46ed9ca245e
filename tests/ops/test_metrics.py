"""Prometheus metrics: route templates as labels, bearer-token protection."""

from __future__ import annotations

from tests.conftest import ClientFactory


async def test_metrics_count_requests_by_route_template(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.get("/healthz")
        await client.get("/no/such/path/123")
        response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'tillpay_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "/no/such/path/123" not in text
    assert "tillpay_http_request_duration_seconds_bucket" in text
    assert "tillpay_db_pool_checked_out" in text


async def test_metrics_require_the_token_when_configured(make_client: ClientFactory) -> None:
    token = "m" * 40
    async with make_client(metrics_token=token) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert right.status_code == 200


async def test_metrics_can_be_disabled(make_client: ClientFactory) -> None:
    async with make_client(metrics_enabled=False) as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
