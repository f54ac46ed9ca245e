"""GET /v1/events: the public events a webhook endpoint receives, in id order, to poll or
to catch up after an outage, for credentials with ``events:read``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Accounts
from tests.credentials.helpers import create_api_key, key_headers
from tests.http.test_errors import assert_problem
from tillpay.events.catalogue import INTERNAL
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import Database
from tillpay.merchant_webhooks import feed


@pytest.fixture(autouse=True)
def _settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "SETTLE", timedelta(0))


async def _reader(client: httpx.AsyncClient, accounts: Accounts) -> dict[str, str]:
    admin = await accounts.admin()
    return key_headers((await create_api_key(client, admin, scopes=["events:read"]))["secret"])


async def test_the_feed_pages_through_public_events_oldest_first(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    headers = await _reader(client, accounts)
    for _ in range(3):
        await accounts.user()
    seen: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": "2", "type": "user.registered"} | ({"after": after} if after else {})
        page = (await client.get("/v1/events", params=params, headers=headers)).json()
        seen += page["data"]
        after = page["next_after"]
        if after is None:
            break
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == 4  # the admin and three customers
    assert {e["type"] for e in seen} == {"user.registered"}
    assert all(e["data"]["object"]["id"] == e["data"]["details"]["user_id"] for e in seen)


async def test_internal_events_are_never_listed(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    headers = await _reader(client, accounts)
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    async with database.transaction() as session:
        for name in INTERNAL:
            session.add(OutboxEvent(type=name, subject_type="day", subject_id="x", payload={}))
    body = (await client.get("/v1/events", params={"limit": "100"}, headers=headers)).json()
    assert body["data"]
    assert not {e["type"] for e in body["data"]} & INTERNAL


async def test_events_younger_than_the_settling_time_wait(
    client: httpx.AsyncClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await _reader(client, accounts)
    monkeypatch.setattr(feed, "SETTLE", timedelta(hours=1))
    body = (await client.get("/v1/events", headers=headers)).json()
    assert body == {"data": [], "next_after": None}


async def test_bad_filters_are_422(client: httpx.AsyncClient, accounts: Accounts) -> None:
    headers = await _reader(client, accounts)
    for params in [{"type": "order.nonsense"}, {"after": "ord_x"}, {"limit": "0"}]:
        assert_problem(await client.get("/v1/events", params=params, headers=headers), 422)


async def test_people_need_events_read_too(client: httpx.AsyncClient, accounts: Accounts) -> None:
    customer = await accounts.user()
    assert_problem(await client.get("/v1/events", headers=customer.headers), 403)
