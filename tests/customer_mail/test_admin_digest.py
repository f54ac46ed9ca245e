"""The daily admin digest: once a day, after the configured UTC time, one ``admin.digest``
outbox event with the previous UTC day's figures, mailed through the outbox to every
active administrator and to nobody else (no merchant webhook, hub or realtime)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.customer_mail.test_customer_mail import context, parsed, run_mail_jobs, smtp, texts
from tests.payments.helpers import DECLINED_CARD, Checkout
from tests.payments.test_unapplied_payments import captured_at_sandbox
from tests.unit.test_mail import smtp_server
from tillpay.customer_mail import digest
from tillpay.events.dispatch import every_event
from tillpay.events.models import EventDelivery, OutboxEvent
from tillpay.kit.ids import id_created_at, is_valid_id
from tillpay.ledger.models import LedgerTransaction
from tillpay.notifications.mail import read_mailbox
from tillpay.payments.models import Payment, Refund, WebhookEvent, WebhookEventStatus
from tillpay.settings import ConfigurationError, Settings

DAY = date(2026, 3, 14)
AT_TEN = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
SEND = datetime(2026, 3, 15, 6, 0, tzinfo=UTC)  # the default time, the day after


# ============================================================================ arrangement


async def dated(checkout: Checkout, at: datetime, *, payments: list[str]) -> None:
    """Date what these payments did (captures and refunds as the ledger posted them,
    their last change) at ``at``: the flows ran today, the digest is about ``DAY``."""
    async with checkout.app.state.database.transaction() as session:
        refunds = select(Refund.id).where(Refund.payment_id.in_(payments))
        await session.execute(
            update(LedgerTransaction)
            .where(
                LedgerTransaction.reference_id.in_(payments)
                | LedgerTransaction.reference_id.in_(refunds)
            )
            .values(created_at=at)
        )
        await session.execute(update(Payment).where(Payment.id.in_(payments)).values(updated_at=at))


async def declined(checkout: Checkout, customer: Account, price: int) -> dict[str, Any]:
    order = await checkout.shop.order(customer, price=price)
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, DECLINED_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    return payment


async def needing_review(checkout: Checkout, customer: Account) -> dict[str, Any]:
    """A capture for an order the customer cancelled meanwhile: money moved, unapplied."""
    order = await checkout.shop.order(customer, price=100)
    payment = await captured_at_sandbox(checkout, customer, order["id"])
    cancelled = await checkout.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    return payment


async def dead_event(checkout: Checkout, error: str) -> str:
    """A provider webhook that ran out of retries (the worker's verdict, written directly:
    reaching it takes a dozen failing runs hours apart)."""
    event = WebhookEvent(
        provider="sandbox",
        dedupe_key=f"dead-{error}",
        event_type="payment.succeeded",
        payload="{}",
        status=WebhookEventStatus.DEAD,
        attempts=12,
        last_error=error,
    )
    async with checkout.app.state.database.transaction() as session:
        session.add(event)
    return event.id


class Day:
    """One seeded day: what happened on ``DAY`` and around it."""

    def __init__(self, checkout: Checkout) -> None:
        self.checkout = checkout

    async def seed(self) -> Day:
        checkout = self.checkout
        customer = await checkout.shop.customer()
        self.admins = [await checkout.shop.accounts.admin(), await checkout.shop.accounts.admin()]
        _, self.big = await checkout.paid_order(customer, price=123456)
        _, self.small = await checkout.paid_order(customer, price=2500)
        _, self.yen = await checkout.paid_order(customer, price=500, currency="JPY")
        # A second provider, without driving its emulator: the digest groups by the
        # payment's provider column, and this relabelled sandbox payment says paystack.
        _, self.naira = await checkout.paid_order(customer, price=750000, currency="NGN")
        async with checkout.app.state.database.transaction() as session:
            await session.execute(
                update(Payment).where(Payment.id == self.naira["id"]).values(provider="paystack")
            )
        refunded = await checkout.client.post(
            f"/v1/payments/{self.big['id']}/refunds",
            json={"amount": 4000, "reason": "requested_by_customer"},
            headers={**self.admins[0].headers, "Idempotency-Key": "digest-refund"},
        )
        assert refunded.json()["status"] == "succeeded", refunded.text
        self.failed = await declined(checkout, customer, 1999)
        self.review = await needing_review(checkout, customer)
        self.dead = await dead_event(checkout, '<script>alert("x")</script>')
        on_the_day = [self.big, self.small, self.yen, self.naira, self.failed, self.review]
        await dated(checkout, AT_TEN, payments=[p["id"] for p in on_the_day])
        # Just outside the day on either side: neither counts.
        _, before = await checkout.paid_order(customer, price=111)
        _, after = await checkout.paid_order(customer, price=222)
        failed_after = await declined(checkout, customer, 333)
        await dated(
            checkout, datetime(2026, 3, 13, 23, 59, 59, 999000, tzinfo=UTC), payments=[before["id"]]
        )
        await dated(checkout, SEND - timedelta(hours=6), payments=[after["id"], failed_after["id"]])
        return self


@pytest.fixture
def checkout(accounts: Accounts) -> Checkout:
    return Checkout(Shop(accounts))


async def write(client: httpx.AsyncClient, now: datetime, **settings: Any) -> None:
    worker = context(client, **settings)
    try:
        await digest.write_due(worker, now=now)
    finally:
        await worker.aclose()


async def digests(client: httpx.AsyncClient) -> list[OutboxEvent]:
    app: Any = client.app  # type: ignore[attr-defined]
    async with app.state.database.read_session() as session:
        rows = await session.execute(
            select(OutboxEvent).where(OutboxEvent.type == "admin.digest").order_by(OutboxEvent.id)
        )
        return list(rows.scalars())


# ============================================================================ the figures


async def test_the_digest_holds_the_previous_utc_days_figures_and_nothing_from_other_days(
    checkout: Checkout, client: httpx.AsyncClient
) -> None:
    day = await Day(checkout).seed()

    await write(client, SEND)

    [event] = await digests(client)
    data = event.payload["data"]
    assert data["day"] == "2026-03-14"
    assert data["totals"] == [
        {
            "provider": "paystack",
            "currency": "NGN",
            "captured_count": 1,
            "captured_amount": 750000,
            "refunded_count": 0,
            "refunded_amount": 0,
        },
        {
            "provider": "sandbox",
            "currency": "JPY",
            "captured_count": 1,
            "captured_amount": 500,
            "refunded_count": 0,
            "refunded_amount": 0,
        },
        {  # the review payment's capture moved money too
            "provider": "sandbox",
            "currency": "USD",
            "captured_count": 3,
            "captured_amount": 123456 + 2500 + 100,
            "refunded_count": 1,
            "refunded_amount": 4000,
        },
    ]
    assert data["failed_payments"]["count"] == 1
    [failed] = data["failed_payments"]["items"]
    assert (failed["id"], failed["amount"], failed["currency"]) == (day.failed["id"], 1999, "USD")
    # Outstanding work is listed whenever it arose: it waits for an operator.
    assert data["needs_review"]["count"] == 1
    [review] = data["needs_review"]["items"]
    assert (review["id"], review["reason"]) == (day.review["id"], "order_not_payable")
    assert data["dead_webhook_events"]["count"] == 1
    assert data["dead_webhook_events"]["items"][0]["id"] == day.dead
    assert data["failed_webhook_deliveries"] == {"count": 0}


# ============================================================================ the mail


async def test_the_digest_reaches_every_active_admin_and_no_one_else_over_smtp(
    checkout: Checkout, client: httpx.AsyncClient
) -> None:
    day = await Day(checkout).seed()
    await write(client, SEND)

    async with smtp_server() as (port, inbox):
        await run_mail_jobs(client, **smtp(port))
        await run_mail_jobs(client, **smtp(port))  # nothing goes twice

    received = [
        (e.rcpt_tos, m)
        for e, m in zip(inbox.envelopes, parsed(inbox), strict=True)
        if m["X-Tillpay-Category"] == "admin_digest"
    ]
    assert sorted(to for to, _ in received) == sorted([a.email] for a in day.admins)
    message = received[0][1]
    assert message["Subject"] == "Daily digest for 14 March 2026: 1 payment needs review"
    plain, html = texts(message)
    assert "sandbox (USD): captured 1,260.56 USD (3), refunded 40.00 USD (1)" in plain
    assert "sandbox (JPY): captured 500 JPY (1)" in plain
    assert "paystack (NGN): captured 7,500.00 NGN (1)" in plain
    assert "FAILED PAYMENTS: 1" in plain
    assert day.failed["id"] in plain
    assert f"/v1/payments/{day.review['id']}" in plain
    assert "(order_not_payable)" in plain
    assert day.dead in plain
    # The dead event's error is text, not markup: escaped in the HTML part.
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    base = context(client).settings.public_base_url
    assert f'href="{base}/v1/payments/{day.review["id"]}"' in html  # a link to each
    assert "1,260.56 USD" in html


async def test_a_down_mail_server_delays_the_digest_and_loses_none(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    await write(client, SEND)
    async with smtp_server() as (port, inbox):
        pass  # nobody listens there now
    start = datetime.now(UTC) + timedelta(seconds=1)

    await run_mail_jobs(client, now=start, **smtp(port))
    async with smtp_server() as (port, inbox):
        await run_mail_jobs(client, now=start + timedelta(seconds=11), **smtp(port))

    [message] = parsed(inbox, "admin_digest")
    assert message["To"] == admin.email
    assert str(message["Subject"]) == "Daily digest for 14 March 2026"
    assert "No payment was captured and no refund went through." in texts(message)[0]


async def test_the_digest_never_goes_to_merchant_webhooks_the_hub_or_realtime(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    settings = {"webhooks_allow_private_targets": True, "webhooks_allowed_ports": [9]}
    async with make_client(**settings) as client:
        admin = await Accounts(client, mail_dir).admin()
        everything = await client.post(
            "/v1/admin/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]},
            headers=admin.headers,
        )
        assert everything.status_code == 201, everything.text
        named = await client.post(
            "/v1/admin/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["admin.digest"]},
            headers=admin.headers,
        )
        assert named.status_code == 422
        assert named.json()["code"] == "unknown_event_type"
        types = await client.get("/v1/admin/event-types", headers=admin.headers)
        assert "admin.digest" not in {t["name"] for t in types.json()}

        await write(client, SEND)
        await run_mail_jobs(client)

        [event] = await digests(client)
        async with client.app.state.database.read_session() as session:  # type: ignore[attr-defined]
            consumers = await session.execute(
                select(EventDelivery.consumer).where(EventDelivery.event_id == event.id)
            )
            assert list(consumers.scalars()) == ["email"]
            assert await every_event("broker")(session, [event]) == []


# ============================================================================ once a day


async def test_one_digest_per_day_however_many_runs_and_workers(
    client: httpx.AsyncClient, accounts: Accounts, mail_dir: Path
) -> None:
    admin = await accounts.admin()

    await asyncio.gather(*(write(client, SEND + timedelta(seconds=s)) for s in range(4)))
    await write(client, SEND + timedelta(hours=12))  # a restarted worker, later that day
    await run_mail_jobs(client)
    await run_mail_jobs(client)

    [event] = await digests(client)
    assert event.id == digest.event_id_of(DAY)
    assert len(read_mailbox(mail_dir, to=admin.email, category="admin_digest")) == 1

    await write(client, SEND + timedelta(days=1))  # the next day has its own
    assert [e.payload["data"]["day"] for e in await digests(client)] == [
        "2026-03-14",
        "2026-03-15",
    ]


async def test_nothing_is_written_before_the_configured_time(
    client: httpx.AsyncClient,
) -> None:
    await write(client, SEND - timedelta(seconds=1))
    assert await digests(client) == []

    late = {"admin_digest_time": time(7, 30)}
    await write(client, SEND + timedelta(minutes=89), **late)
    assert await digests(client) == []
    await write(client, SEND + timedelta(minutes=90), **late)
    assert [e.payload["data"]["day"] for e in await digests(client)] == ["2026-03-14"]


async def test_no_digest_when_it_is_turned_off(client: httpx.AsyncClient) -> None:
    await write(client, SEND + timedelta(hours=1), admin_digest_enabled=False)
    assert await digests(client) == []


# ============================================================================ rules


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime(2026, 3, 15, 5, 59, 59, tzinfo=UTC), None),
        (datetime(2026, 3, 15, 6, 0, tzinfo=UTC), DAY),
        (datetime(2026, 3, 15, 23, 59, tzinfo=UTC), DAY),
        (datetime(2026, 3, 16, 0, 0, tzinfo=UTC), None),
        # An aware time in another zone is read in UTC.
        (datetime(2026, 3, 15, 8, 0, tzinfo=timezone(timedelta(hours=2))), DAY),
    ],
)
def test_the_due_day_is_yesterday_from_the_configured_time_until_midnight(
    now: datetime, due: date | None
) -> None:
    assert digest.due_day(now, time(6, 0)) == due


def test_the_event_id_is_fixed_by_the_day_and_a_well_formed_event_id() -> None:
    assert digest.event_id_of(DAY) == digest.event_id_of(DAY)
    assert digest.event_id_of(DAY) != digest.event_id_of(DAY + timedelta(days=1))
    assert is_valid_id(digest.event_id_of(DAY), "evt")
    assert id_created_at(digest.event_id_of(DAY)) == datetime(2026, 3, 15, tzinfo=UTC)


def test_the_send_time_is_a_utc_time_of_day() -> None:
    assert Settings(admin_digest_time="07:30").admin_digest_time == time(7, 30)
    with pytest.raises((ConfigurationError, ValueError)):
        Settings(admin_digest_time="07:30+02:00")
    with pytest.raises((ConfigurationError, ValueError)):
        Settings(admin_digest_time="25:00")
