"""A real server for WebSocket tests: the test's app (lifespan run by ``make_client``)
served by uvicorn on a free loopback port, and a client speaking ``/v1/ws``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.harness.servers import serving
from tests.payments.helpers import Checkout
from tillpay import jobs
from tillpay.kit.jobs import JobContext
from tillpay.realtime import jobs as realtime_jobs
from tillpay.realtime.bus import Bus, LocalBus


class Live:
    """The app over HTTP (in-process transport) and over a real socket (uvicorn)."""

    def __init__(self, client: httpx.AsyncClient, base: str, mail_dir: Path) -> None:
        self.client = client
        self.ws_url = base.replace("http://", "ws://") + "/v1/ws"
        self.checkout = Checkout(Shop(Accounts(client, mail_dir)))
        self.shop = self.checkout.shop
        self.accounts = self.shop.accounts

    @property
    def app(self) -> Any:
        return self.client.app  # type: ignore[attr-defined]

    def context(self) -> JobContext[Any]:
        context: JobContext[Any] = JobContext(self.app.state.settings, self.app.state.database)
        if self.app.state.settings.redis_url is None:
            # As the app's own in-process worker would: straight to this app's sockets.
            local: Bus | None = LocalBus(self.app.state.realtime)
            context.provide(realtime_jobs.bus_of, local)
        return context

    async def push(self) -> None:
        """What the worker does after a commit: relay the outbox, publish realtime."""
        context = self.context()
        try:
            await jobs.relay_events(context)
            await realtime_jobs.publish_due(context)
        finally:
            await context.aclose()

    @asynccontextmanager
    async def socket(
        self, account: Account | None = None, *, origin: str | None = None, path: str = ""
    ) -> AsyncIterator[ClientConnection]:
        """A socket authenticated as ``account`` (ready already read), or a bare one."""
        kwargs: dict[str, Any] = {"open_timeout": 10}
        if origin is not None:
            kwargs["origin"] = origin
        async with connect(self.ws_url + path, **kwargs) as ws:
            if account is not None:
                await ws.send(json.dumps({"type": "auth", "token": account.access_token}))
                ready = await next_message(ws)
                assert ready["type"] == "ready", ready
            yield ws


async def next_message(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message["type"] != "heartbeat":
            return message


async def events(ws: ClientConnection, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` events (their ``event`` bodies)."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = await next_message(ws, within)
        assert message["type"] == "event", message
        out.append(message["event"])
    return out


async def heard(
    ws: ClientConnection, *types: str, within: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Events until one of each of ``types`` arrived (others, such as the account events
    of signing up, are passed over), by type."""
    seen: dict[str, dict[str, Any]] = {}
    while not set(types) <= set(seen):
        [event] = await events(ws, 1, within)
        seen.setdefault(event["type"], event)
    return seen


async def nothing_pending(ws: ClientConnection) -> None:
    """A ping answered by the next message proves nothing was queued before it."""
    await ws.send(json.dumps({"type": "ping"}))
    assert (await next_message(ws)) == {"type": "pong"}


@pytest.fixture
def make_live(make_client: ClientFactory, clean_db: None, mail_dir: Path) -> Any:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Live]:
        async with make_client(**overrides) as client, serving(client.app) as base:  # type: ignore[attr-defined]
            yield Live(client, base, mail_dir)

    return factory


@pytest.fixture
async def live(make_live: Any) -> AsyncIterator[Live]:
    async with make_live(realtime_recheck_seconds=0.5) as running:
        yield running
