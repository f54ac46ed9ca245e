"""One transaction per request: committed before the response, rolled back on failure
(unless the failure is a refusal that keeps its writes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.conftest import ClientFactory
from tests.probes import install_probes, probe_metadata
from tillpay.kit.db import create_engine
from tillpay.settings import Settings


@pytest.fixture
async def probe_table(make_settings: Callable[..., Settings]) -> AsyncIterator[None]:
    engine = create_engine(make_settings())
    async with engine.begin() as conn:
        await conn.run_sync(probe_metadata.drop_all)
        await conn.run_sync(probe_metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(probe_metadata.drop_all)
    await engine.dispose()


@pytest.mark.usefixtures("probe_table")
async def test_a_successful_request_is_durable_when_it_returns(
    make_client: ClientFactory,
) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post("/v1/probe/write", params={"label": "kept"})
        assert response.status_code == 200
        rows = await client.get("/v1/probe/rows")
    assert rows.json() == ["kept"]


@pytest.mark.usefixtures("probe_table")
async def test_a_failed_request_leaves_nothing_behind(make_client: ClientFactory) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post("/v1/probe/write", params={"label": "lost", "fail": True})
        assert response.status_code == 409
        rows = await client.get("/v1/probe/rows")
    assert rows.json() == []


@pytest.mark.usefixtures("probe_table")
async def test_a_committed_refusal_keeps_its_writes_and_answers_as_its_error(
    make_client: ClientFactory,
) -> None:
    async with make_client(setup=install_probes) as client:
        response = await client.post("/v1/probe/write", params={"label": "kept", "refuse": True})
        rows = await client.get("/v1/probe/rows")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["code"], body["title"]) == ("conflict", "Conflict")
    assert body["detail"] == "the probe refused, keeping its write"
    assert rows.json() == ["kept"]
