"""Access log lines and redaction on real requests."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ClientFactory
from tests.probes import install_probes


def _lines(captured: str) -> list[dict[str, object]]:
    out = []
    for line in captured.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_one_access_line_per_request_with_the_route_template(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(setup=install_probes) as client:
        capsys.readouterr()
        response = await client.post("/v1/probe/echo", json={"amount": 1, "currency": "USD"})
    access = [e for e in _lines(capsys.readouterr().out) if e.get("event") == "http.request"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST"
    assert line["path"] == "/v1/probe/echo"
    assert line["status"] == 200
    assert line["request_id"] == response.headers["x-request-id"]
    assert isinstance(line["duration_ms"], float)


async def test_secrets_in_requests_never_reach_the_log(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(setup=install_probes) as client:
        await client.post(
            "/v1/probe/log",
            json={
                "password": "Tr0ub4dor&3-horse",
                "card_number": "4242 4242 4242 4242",
                "cvv": "123",
                "nested": {"refresh_token": "rt_secretvalue123"},
            },
            headers={"authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"},
        )
    output = capsys.readouterr().out
    assert "probe.received" in output
    for secret in (
        "Tr0ub4dor&3-horse",
        "4242 4242 4242 4242",
        "4242424242424242",
        "rt_secretvalue123",
        "eyJhbGciOiJFUzI1NiJ9",
    ):
        assert secret not in output


async def test_unhandled_exceptions_are_logged_without_secrets(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(setup=install_probes) as client:
        await client.get("/v1/probe/boom")
    output = capsys.readouterr().out
    assert "http.unhandled_exception" in output
    assert "sk_live_51Habcdefghijklmnop" not in output
