"""A real crash during a refund: SIGKILL the API while the provider call is in flight.

Two ``tillpay serve`` processes in turn (the first is killed) share this test's PostgreSQL
database and Redis prefix with an in-process app that sets the shop up. The sandbox PSP is
the provider; the servers reach it over real HTTP through a recording emulator that
forwards to it (the sandbox dedupes refunds on their Idempotency-Key, as real providers do)
and, after the first refund went through, holds the answer back: the provider has
refunded, tillpay never hears it. Then the same request is retried with the same key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tests.conftest import ClientFactory
from tests.harness.servers import Tillpay, server_env, serving
from tests.payments.helpers import Checkout
from tests.payments.test_payment_flows import checkout_with, fetch, ledger_transactions
from tillpay.kit.db import utcnow
from tillpay.kit.idempotency import STALE_CLAIM
from tillpay.kit.idempotency_models import IdempotencyRecord
from tillpay.ledger import service as ledger
from tillpay.payments.models import Refund
from tillpay.payments.sync import janitor_pass
from tillpay.sandbox.models import SandboxRefund, SandboxSession

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class RefundCall:
    idempotency_key: str | None
    amount: int
    status: int


@dataclass
class ProviderEmulator:
    """Forwards the sandbox API to the in-process sandbox and records refund creates; the
    answer to the first refund create is held back until ``release`` is set."""

    upstream: httpx.AsyncClient
    refunds: list[RefundCall] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    refunded: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            k.decode(): v.decode()
            for k, v in scope["headers"]
            if k.lower() in (b"authorization", b"idempotency-key", b"content-type")
        }
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode()
        answer = await self.upstream.request(scope["method"], path, content=body, headers=headers)
        if scope["method"] == "POST" and scope["path"].endswith("/refunds"):
            self.refunds.append(
                RefundCall(
                    headers.get("idempotency-key"),
                    int(httpx.Response(200, content=body).json()["amount"]),
                    answer.status_code,
                )
            )
            if len(self.refunds) == 1:
                self.refunded.set()
                await self.release.wait()  # the provider has refunded; tillpay never hears
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})


async def _count(checkout: Checkout, model: Any) -> int:
    async with checkout.app.state.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def shop(
    backend: str, make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> AsyncIterator[Checkout]:
    if backend != "postgres":
        pytest.skip("the crash test runs on PostgreSQL (two processes share the database)")
    async with checkout_with(make_client, mail_dir) as checkout:
        yield checkout


async def test_a_refund_killed_in_flight_and_retried_refunds_once(
    shop: Checkout, tmp_path: Path
) -> None:
    checkout = shop
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    key = str(uuid.uuid4())
    path = f"/v1/payments/{payment['id']}/refunds"
    body = {"amount": 3000, "reason": "requested_by_customer"}
    headers = {**admin.headers, "Idempotency-Key": key}

    upstream = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=checkout.app), base_url="http://localhost"
    )
    emulator = ProviderEmulator(upstream)
    servers = Tillpay({}, tmp_path)
    async with upstream, serving(emulator) as provider_base, httpx.AsyncClient(timeout=30) as http:
        servers.env = server_env(checkout.app, provider_base, tmp_path)
        try:
            first, base = await servers.start()
            in_flight = asyncio.create_task(http.post(f"{base}{path}", json=body, headers=headers))
            await asyncio.wait_for(emulator.refunded.wait(), timeout=30)
            first.kill()  # SIGKILL while the provider call is in flight
            first.wait(timeout=10)
            with pytest.raises(httpx.TransportError):
                await in_flight
            emulator.release.set()
            assert await _count(checkout, SandboxRefund) == 1  # the provider has refunded

            _, base = await servers.start()
            at_once = await http.post(f"{base}{path}", json=body, headers=headers)
            assert at_once.status_code == 409, at_once.text
            assert at_once.json()["code"] == "idempotency_in_progress"

            # Five minutes pass (the claim goes stale) without waiting for them.
            async with checkout.app.state.database.session() as session, session.begin():
                await session.execute(
                    update(IdempotencyRecord)
                    .where(IdempotencyRecord.key == key)
                    .values(created_at=utcnow() - STALE_CLAIM - timedelta(seconds=1))
                )
            resumed = await http.post(f"{base}{path}", json=body, headers=headers)
            await janitor_pass(checkout.runtime, now=utcnow() + timedelta(hours=1))
        finally:
            emulator.release.set()
            servers.stop_all()

    assert resumed.status_code == 201, resumed.text
    refund_id = resumed.json()["id"]
    assert resumed.json()["status"] == "succeeded"
    assert await _count(checkout, Refund) == 1
    # tillpay sent the same provider idempotency key on resume; the provider refunded once.
    same_key = f"tillpay:{refund_id}:refund"
    assert [(c.idempotency_key, c.amount) for c in emulator.refunds] == [
        (same_key, 3000),
        (same_key, 3000),
    ]
    async with checkout.app.state.database.session() as session:
        provider_refunds = (await session.execute(select(SandboxRefund.amount))).scalars().all()
        refunded = await session.scalar(select(func.sum(SandboxSession.refunded_amount)))
        assert await ledger.unbalanced_transactions(session) == []
    assert (provider_refunds, refunded) == ([3000], 3000)
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (3000, 3000)
    assert await ledger_transactions(checkout, refund_id) == 1
