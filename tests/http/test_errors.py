"""Every error is application/problem+json (RFC 9457) without internals."""

from __future__ import annotations

import httpx

from tests.conftest import ClientFactory
from tests.probes import install_probes

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["instance"] == f"urn:request:{response.headers['x-request-id']}"
    assert str(body["type"]).startswith("https://")
    return body


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/does-not-exist"), 404)
    assert body["code"] == "not_found"


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_trace_is_refused_on_any_path(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/", "/anything/at/all"):
        response = await client.request("TRACE", path)
        assert_problem(response, 405)


async def test_unknown_verbs_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.request("PROPFIND", "/healthz")
    assert_problem(response, 405)


async def test_validation_error_lists_the_fields(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post("/v1/probe/echo", json={"amount": 1.5, "currency": "usd"})
    body = assert_problem(response, 422)
    assert body["code"] == "validation_error"
    fields = {e["field"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert fields == {"amount", "currency"}


async def test_validation_error_does_not_echo_input(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/echo",
            json={"amount": 1, "currency": "USD", "card_number": "4242424242424242"},
        )
    assert_problem(response, 422)
    assert "4242424242424242" not in response.text


async def test_malformed_json_is_a_400_problem(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post(
            "/v1/probe/echo",
            content=b'{"amount": 1,',
            headers={"content-type": "application/json"},
        )
    body = assert_problem(response, 400)
    assert body["code"] == "malformed_json"


async def test_unexpected_exception_is_a_generic_500(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.get("/v1/probe/boom")
    body = assert_problem(response, 500)
    assert body["code"] == "internal_error"
    for leak in ("SELECT", "password_hash", "/srv/", "sk_live", "Traceback", "RuntimeError"):
        assert leak not in response.text


async def test_problem_documents_are_described_in_the_error_type_url(
    client: httpx.AsyncClient,
) -> None:
    body = assert_problem(await client.get("/missing"), 404)
    assert body["type"] == "https://tillpay.dev/problems/not_found"
