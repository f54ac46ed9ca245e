"""Drive the payment pipeline end to end: order → payment → sandbox page → webhook."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.accounts.helpers import Account
from tests.commerce.helpers import Shop
from tillpay.kit.jobs import JobContext
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.payments.webhooks import process_due_webhooks
from tillpay.sandbox import jobs as sandbox_jobs

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
INSUFFICIENT_CARD = "4000 0000 0000 9995"
PENDING_CARD = "4000 0000 0000 0077"
LATE_TWICE_CARD = "4000 0000 0000 0085"


class Checkout:
    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.client: httpx.AsyncClient = shop.client

    @property
    def app(self) -> Any:
        return self.client.app  # type: ignore[attr-defined]

    @property
    def runtime(self) -> PaymentsRuntime:
        return self.app.state.payments

    async def pay(
        self, customer: Account, order_id: str, *, key: str | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/orders/{order_id}/payments",
            json={"provider": "sandbox", **body},
            headers={**customer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def submit_card(self, payment: dict[str, Any], card: str) -> httpx.Response:
        """Open the hosted page and post its form, as a browser would."""
        url = payment["next_action"]["redirect_url"]
        page = await self.client.get(url)
        assert page.status_code == 200, page.text
        action = re.search(r"action='([^']+)'", page.text)
        assert action is not None
        return await self.client.post(
            action.group(1),
            data={"card_number": card},
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

    async def deliver_webhooks(self) -> int:
        context = JobContext(
            settings=self.app.state.settings,
            database=self.app.state.database,
            provider_transport=self.app.state.provider_transport,
        )
        return await sandbox_jobs.deliver_due(context)

    async def process_webhooks(self) -> int:
        return await process_due_webhooks(self.runtime)

    async def paid_order(
        self, customer: Account, **product: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An order paid through the sandbox (page + webhook). Returns (order, payment)."""
        order = await self.shop.order(customer, **product)
        payment = (await self.pay(customer, order["id"])).json()
        await self.submit_card(payment, GOOD_CARD)
        await self.deliver_webhooks()
        await self.process_webhooks()
        refreshed = await self.client.get(f"/v1/payments/{payment['id']}", headers=customer.headers)
        return order, refreshed.json()

    async def flagged_payment(
        self, customer: Account, **product: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A payment that needs review, as it happens: the card paid at the sandbox, then
        the order was cancelled before tillpay heard of it, so the capture is held
        unapplied and flagged (``order_not_payable``). Returns (order, payment)."""
        order = await self.shop.order(customer, **product)
        payment = (await self.pay(customer, order["id"])).json()
        await self.submit_card(payment, GOOD_CARD)
        cancelled = await self.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=customer.headers
        )
        assert cancelled.status_code == 200, cancelled.text
        await self.deliver_webhooks()
        await self.process_webhooks()
        refreshed = await self.client.get(f"/v1/payments/{payment['id']}", headers=customer.headers)
        flagged = refreshed.json()
        assert (flagged["status"], flagged["needs_review"]) == ("succeeded", True), flagged
        return order, flagged
