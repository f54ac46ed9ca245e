"""Customer mail through the outbox: the receipt after a payment, a notice when a payment
fails or a refund is issued; through a real SMTP server (aiosmtpd) that may be down for a
while without a mail being lost or sent twice."""

from __future__ import annotations

from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account
from tests.commerce.helpers import Shop
from tests.payments.helpers import DECLINED_CARD, Checkout
from tests.unit.test_mail import Inbox, smtp_server
from tillpay import jobs
from tillpay.customer_mail import jobs as mail_jobs
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import JobContext
from tillpay.notifications.mail import read_mailbox
from tillpay.notifications.templating import format_amount


def context(client: httpx.AsyncClient, **settings: Any) -> JobContext[Any]:
    """The worker's context; ``settings`` override the app's (an SMTP server the worker
    uses while the app's account mail still goes to the mailbox folder)."""
    app: Any = client.app  # type: ignore[attr-defined]
    base = app.state.settings
    return JobContext(
        settings=base.model_copy(update=settings) if settings else base,
        database=app.state.database,
    )


async def run_mail_jobs(client: httpx.AsyncClient, now: Any = None, **settings: Any) -> None:
    worker = context(client, **settings)
    try:
        await jobs.relay_events(worker)
        await mail_jobs.send_due(worker, now=now)
    finally:
        await worker.aclose()


def smtp(port: int) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "smtp_allow_plaintext": True,
        "smtp_timeout_seconds": 2.0,
    }


def parsed(inbox: Inbox, category: str | None = None) -> list[EmailMessage]:
    """The messages the server received (of one category: the arrangement's accounts get
    their own notices, a welcome, 2FA turned on)."""
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(e.content) for e in inbox.envelopes]  # type: ignore[arg-type]
    return [m for m in messages if category is None or m["X-Tillpay-Category"] == category]


def texts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


async def paid(checkout: Checkout, customer: Account, **product: Any) -> tuple[dict, dict]:
    return await checkout.paid_order(customer, **product)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (123456789, "USD", "1,234,567.89 USD"),
        (500, "JPY", "500 JPY"),
        (1005, "KWD", "1.005 KWD"),
        (7, "EUR", "0.07 EUR"),
        (-2500, "usd", "-25.00 USD"),
        (0, "NGN", "0.00 NGN"),
    ],
)
def test_amounts_are_formatted_with_their_currency_exponent(
    amount: int, currency: str, shown: str
) -> None:
    assert format_amount(amount, currency) == shown


async def test_a_paid_order_sends_the_customer_a_receipt_over_smtp(
    checkout: Checkout, client: httpx.AsyncClient
) -> None:
    customer = await checkout.shop.customer()
    order, payment = await paid(
        checkout, customer, price=123456, title='Mug <script>alert("x")</script> & co'
    )

    async with smtp_server() as (port, inbox):
        await run_mail_jobs(client, **smtp(port))

    received = zip(inbox.envelopes, parsed(inbox), strict=True)
    [(envelope, message)] = [(e, m) for e, m in received if m["X-Tillpay-Category"] == "receipt"]
    assert envelope.rcpt_tos == [customer.email]
    assert message["Subject"] == f"Receipt for order {order['id']}: 1,234.56 USD"
    assert message["X-Tillpay-Category"] == "receipt"
    plain, html = texts(message)
    # The catalog strips the markup; what is left is text: shown as is in the plain part,
    # escaped in the HTML part.
    assert "1 x Mug  & co" in plain
    assert "Total paid: 1,234.56 USD" in plain
    assert payment["id"] in plain
    assert "<script>" not in html
    assert "Mug  &amp; co" in html
    assert "1,234.56 USD" in html


async def test_mail_waits_while_the_smtp_server_is_down_and_goes_once_when_it_is_back(
    checkout: Checkout, client: httpx.AsyncClient
) -> None:
    customer = await checkout.shop.customer()
    await paid(checkout, customer)
    await paid(checkout, customer)
    async with smtp_server() as (port, inbox):
        pass  # the port is free again: nobody listens there now
    # The worker's clock, a moment after the deliveries are made.
    start = utcnow() + timedelta(seconds=1)

    await run_mail_jobs(client, now=start, **smtp(port))  # the server is down
    async with smtp_server() as (port, inbox):
        await run_mail_jobs(client, now=start + timedelta(seconds=5), **smtp(port))
        assert inbox.envelopes == []  # the retry is not due yet (10 s)
        await run_mail_jobs(client, now=start + timedelta(seconds=11), **smtp(port))
        # The receipts the first failure stopped the run before were not left claimed
        # (their claims would lapse only after two minutes): they went with the retry.
        first_retry = [str(m["Subject"]) for m in parsed(inbox, "receipt")]
        await run_mail_jobs(client, now=start + timedelta(minutes=3), **smtp(port))
        await run_mail_jobs(client, now=start + timedelta(hours=2), **smtp(port))

    assert len(first_retry) == 2
    subjects = [str(m["Subject"]) for m in parsed(inbox, "receipt")]
    assert len(subjects) == 2
    assert all(s.startswith("Receipt for order ord_") for s in subjects)
    assert len(set(subjects)) == 2  # one receipt per order, none twice


async def test_a_declined_payment_tells_the_customer_no_money_was_taken(
    checkout: Checkout, client: httpx.AsyncClient, mail_dir: Path
) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer, price=2500)
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, DECLINED_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()

    await run_mail_jobs(client)

    [notice] = read_mailbox(mail_dir, to=customer.email, category="payment_failed")
    assert (
        str(notice["Subject"]).strip() == f"Your payment for order {order['id']} did not go through"
    )
    plain, html = texts(notice)
    assert "25.00 USD" in plain
    assert "the card was declined" in plain
    assert "No money was taken" in html
    assert read_mailbox(mail_dir, to=customer.email, category="receipt") == []


async def test_a_refund_tells_the_customer_how_much_went_back(
    checkout: Checkout, client: httpx.AsyncClient, mail_dir: Path
) -> None:
    customer = await checkout.shop.customer()
    order, payment = await paid(checkout, customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    refunded = await client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 4000, "reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": "mail-refund"},
    )
    assert refunded.json()["status"] == "succeeded", refunded.text

    await run_mail_jobs(client)
    await run_mail_jobs(client)  # nothing is sent twice

    [notice] = read_mailbox(mail_dir, to=customer.email, category="refund_issued")
    assert notice["Subject"] == "Refund of 40.00 USD issued"
    assert order["id"] in texts(notice)[0]
    assert len(read_mailbox(mail_dir, to=customer.email, category="receipt")) == 1


@pytest.fixture
def checkout(accounts: Any) -> Checkout:
    return Checkout(Shop(accounts))
