"""The shape every provider test drives tillpay through: one app with one provider
configured and its emulator (tests/emulators/) attached, plus the helpers of the customer,
the admin and the worker. Each provider module subclasses :class:`ProviderEnv`, names its
provider, and adds what only that provider has (how its payer pays, its own controls)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from sqlalchemy import func, select

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.payments.helpers import Checkout
from tillpay.kit.db import Database
from tillpay.orders.models import Order
from tillpay.payments.models import PaymentAttempt, WebhookEvent
from tillpay.payments.runtime import PaymentsRuntime

EmulatorT = TypeVar("EmulatorT")

Json = dict[str, Any]


class ProviderEnv(Generic[EmulatorT]):
    """tillpay (``client``, ``app``) with ``provider`` enabled and ``emulator`` attached."""

    provider: ClassVar[str]
    # What a test order is made of unless the test says otherwise (currency, price).
    order_defaults: ClassVar[Json] = {}

    def __init__(self, client: httpx.AsyncClient, emulator: EmulatorT, mail_dir: Path) -> None:
        self.client = client
        self.emulator = emulator
        self.accounts = Accounts(client, mail_dir)
        self.shop = Shop(self.accounts)
        self.checkout = Checkout(self.shop)

    @property
    def app(self) -> Any:
        return self.checkout.app

    @property
    def runtime(self) -> PaymentsRuntime:
        return self.checkout.runtime

    @property
    def database(self) -> Database:
        return self.app.state.database

    # ------------------------------------------------------------------ the customer

    async def new_order(self, customer: Account, **product: Any) -> Json:
        return await self.shop.order(customer, **{**self.order_defaults, **product})

    async def pay(self, customer: Account, order_id: str, **body: Any) -> httpx.Response:
        return await self.checkout.pay(customer, order_id, provider=self.provider, **body)

    async def started(
        self, customer: Account | None = None, **product: Any
    ) -> tuple[Account, Json, Json]:
        """A customer (a new one unless given), their order and a payment with this
        provider awaiting the payer."""
        customer = customer or await self.shop.customer()
        order = await self.new_order(customer, **product)
        created = await self.pay(customer, order["id"])
        assert created.status_code == 201, created.text
        return customer, order, created.json()

    async def settle_payment(self, payment: Json) -> None:
        """The payer pays ``payment`` and tillpay's worker applies what the provider says."""
        raise NotImplementedError

    async def paid(
        self, customer: Account | None = None, **product: Any
    ) -> tuple[Account, Json, Json]:
        """As :meth:`started`, then paid and applied; the payment as tillpay shows it."""
        customer, order, payment = await self.started(customer, **product)
        await self.settle_payment(payment)
        state = await self.payment(customer, payment["id"])
        assert state["status"] == "succeeded", state
        return customer, order, state

    async def payment(self, customer: Account, payment_id: str) -> Json:
        response = await self.client.get(f"/v1/payments/{payment_id}", headers=customer.headers)
        return response.json()

    async def order(self, customer: Account, order_id: str) -> Json:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=customer.headers)
        return response.json()

    # ------------------------------------------------------------------ the admin

    async def refund(
        self, admin: Account, payment_id: str, *, key: str | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/payments/{payment_id}/refunds",
            json={"reason": "requested_by_customer", **body},
            headers={**admin.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    # ------------------------------------------------------------------ the database

    async def order_status(self, order_id: str) -> str:
        order = await self.stored(Order, order_id)
        return str(order.status)

    async def attempt(self, payment_id: str) -> PaymentAttempt:
        async with self.database.session() as session:
            row = await session.execute(
                select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id)
            )
            return row.scalar_one()

    async def webhook_events(self, *, with_ignored: bool = True) -> list[WebhookEvent]:
        """The stored webhook events (without ``with_ignored``: those the worker acts on)."""
        query = select(WebhookEvent)
        if not with_ignored:
            query = query.where(WebhookEvent.status != "ignored")
        async with self.database.session() as session:
            return list((await session.execute(query)).scalars())

    async def stored(self, model: Any, id_: str) -> Any:
        async with self.database.session() as session:
            return await session.get(model, id_)

    async def count(self, model: Any) -> int:
        async with self.database.session() as session:
            return (await session.execute(select(func.count()).select_from(model))).scalar_one()
