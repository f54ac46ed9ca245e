from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.payments.helpers import Checkout
from tests.webhooks import receiver as receiver_module
from tests.webhooks.receiver import Receiver
from tillpay import jobs
from tillpay.kit.jobs import JobContext
from tillpay.merchant_webhooks import delivery


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = receiver_module.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


def webhook_settings(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    """Settings that let this app deliver to the local receiver (127.0.0.1, its port)."""
    return {
        "webhooks_allow_private_targets": True,
        "webhooks_allowed_ports": [receiver.port],
        "webhooks_retry_schedule": [0, 5, 300],
        "webhooks_timeout_seconds": 2.0,
        **overrides,
    }


@pytest.fixture
async def client(
    make_client: ClientFactory, clean_db: None, receiver: Receiver
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**webhook_settings(receiver)) as c:
        yield c


class Hooks:
    """Drives merchant webhooks: the admin's API and the worker's two jobs."""

    def __init__(self, client: httpx.AsyncClient, mail_dir: Path) -> None:
        self.client = client
        self.accounts = Accounts(client, mail_dir)
        self.checkout = Checkout(Shop(self.accounts))
        self._admin: Account | None = None

    async def admin(self) -> Account:
        if self._admin is None:
            self._admin = await self.accounts.admin()
        return self._admin

    async def register(self, url: str, event_types: list[str]) -> httpx.Response:
        admin = await self.admin()
        return await self.client.post(
            "/v1/admin/webhook-endpoints",
            json={"url": url, "event_types": event_types, "description": "test"},
            headers=admin.headers,
        )

    async def endpoint(self, url: str, event_types: list[str]) -> dict[str, Any]:
        created = await self.register(url, event_types)
        assert created.status_code == 201, created.text
        return created.json()

    def context(self) -> JobContext[Any]:
        app: Any = self.client.app  # type: ignore[attr-defined]
        return JobContext(settings=app.state.settings, database=app.state.database)

    async def relay(self) -> None:
        await jobs.relay_events(self.context())

    async def deliver(self, now: datetime | None = None) -> None:
        """Batches until one is not full, as the worker runs a job that found work again
        at once (the arrangement's accounts add their own user.* deliveries)."""
        while await delivery.deliver_due(self.context(), now=now):
            pass

    async def flush(self, now: datetime | None = None) -> None:
        """What the worker does next: fan out new events, then deliver what is due."""
        await self.relay()
        await self.deliver(now)

    async def attempts(self, endpoint_id: str) -> list[dict[str, Any]]:
        admin = await self.admin()
        page = await self.client.get(
            f"/v1/admin/webhook-endpoints/{endpoint_id}/deliveries", headers=admin.headers
        )
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        return items


@pytest.fixture
def hooks(client: httpx.AsyncClient, mail_dir: Path) -> Hooks:
    return Hooks(client, mail_dir)
