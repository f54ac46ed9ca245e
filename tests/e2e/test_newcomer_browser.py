"""The newcomer's walk (docs/console.md), in Debian's headless Chromium against one real
``tillpay serve`` process, without curl: create the administrator with the real CLI; a
shopper buys in /shop with the sandbox card; the administrator signs in to /console, sets
up 2FA in the browser (QR code, key, one code, recovery codes), adds a webhook endpoint
(a local receiver), opens the payment, refunds part of it after confirming it is them,
and sees every consequence: the refund on the payment, the ledger's reversal entries,
the audit entry, the customer's refund mail and the ``refund.succeeded`` delivery.
Screenshots: artifacts/screenshots/console-newcomer-*.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from playwright.async_api import Browser, Page

from tests.accounts.helpers import PASSWORD, unique_email
from tests.e2e.harness import (
    Server,
    Shop,
    Visit,
    cli,
    delivery_settings,
    eventually,
    needs_browser,
    order_in_shop,
    pay_in_shop,
    register_and_sign_in,
    screenshot,
)
from tests.payments.helpers import GOOD_CARD
from tests.webhooks.receiver import Receiver
from tillpay.notifications.mail import read_mailbox

pytestmark = needs_browser

TITLE = "Newcomer's teapot"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def server_settings(receiver: Receiver) -> dict[str, str]:
    """Let the harness's server deliver webhooks to the local receiver."""
    return delivery_settings(receiver.port)


@pytest.fixture(scope="module")
async def product(shop: Shop) -> None:
    vendor = await shop.account(role="VENDOR")
    created = await shop.http.post(
        "/v1/products",
        json={
            "title": TITLE,
            "currency": "USD",
            "sku": "E2E-NEWCOMER-POT",
            "price_amount": 4000,
            "stock": 5,
        },
        headers=vendor,
    )
    assert created.status_code == 201, created.text


class Authenticator:
    """The administrator's authenticator app: codes for steps not used yet."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    def code(self) -> str:
        now = datetime.now(UTC)
        current = self.totp.timecode(now)
        step = max(current, self.last_step + 1)
        assert step <= current + 1, "more than two codes in one 30 s window"
        self.last_step = step
        return self.totp.at(now + timedelta(seconds=30 * (step - current)))


async def _buy(browser: Browser, server: Server) -> tuple[str, str, str]:
    """A shopper buys the teapot in /shop: (their email, order id, payment id)."""
    context = await browser.new_context(viewport={"width": 800, "height": 700})
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        email = await register_and_sign_in(page, server, shots=False)
        await order_in_shop(page, server, TITLE, shots=False)
        await pay_in_shop(page, server, GOOD_CARD, "Pay USD 40.00")
        assert await page.get_by_role("heading", name="Thank you for your order").is_visible()
        found = re.search(r"/shop/orders/(ord_\w+)\?payment_id=(pay_\w+)", page.url)
        assert found, page.url
        return email, found.group(1), found.group(2)
    finally:
        await context.close()


async def _enrol(page: Page, server: Server, admin: str) -> Authenticator:
    """Sign in (password only), land on the security page, set up 2FA."""
    await page.goto(f"{server.base_url}/console/login")
    await page.get_by_label("Email").fill(admin)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(f"{server.base_url}/console/security")
    assert await page.get_by_text("not set up for your account").is_visible()
    await screenshot(page, "console-newcomer-security")
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    await page.wait_for_url(f"{server.base_url}/console/security/2fa")
    qr = page.get_by_role("img", name=re.compile("QR code"))
    await qr.wait_for()
    # The page's CSP let the data: image load (a refused one has no natural size).
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = await page.get_by_label("Key for manual entry").input_value()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    await screenshot(page, "console-newcomer-2fa-enrol")
    app = Authenticator(secret)
    await page.get_by_label("Code from the app").fill(app.code())
    await page.get_by_role("button", name="Turn on two-factor authentication").click()
    await page.get_by_role("heading", name="Two-factor authentication is on").wait_for()
    codes = await page.locator("[data-recovery-code]").all_inner_texts()
    assert len(codes) == 10
    await screenshot(page, "console-newcomer-2fa-recovery-codes")
    await page.get_by_role("link", name="Continue to the console").click()
    await page.wait_for_url(f"{server.base_url}/console")
    assert await page.get_by_role("link", name="Audit").is_visible()  # admin pages now
    return app


async def _add_endpoint(page: Page, server: Server, receiver: Receiver) -> str:
    """Register the receiver for every event; answers the endpoint page's URL."""
    await page.goto(f"{server.base_url}/console/webhooks/new")
    await page.get_by_label("Endpoint URL").fill(receiver.url)
    await page.get_by_label("All events").check()
    await page.get_by_role("button", name="Create endpoint").click()
    await page.get_by_text(receiver.url).first.wait_for()
    link = page.locator('a[href^="/console/webhooks/whe_"]').first
    href = await link.get_attribute("href")
    assert href, await page.content()
    return f"{server.base_url}{href}"


def _age_sessions(server: Server, admin: str) -> None:
    """The administrator signed in two hours ago: refunding needs a step-up."""
    old = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None).isoformat(sep=" ")
    server.sql(
        "UPDATE auth_sessions SET auth_time = ? WHERE user_id = "
        "(SELECT id FROM users WHERE email = ?)",
        old,
        admin,
    )


async def _refund(page: Page, server: Server, app: Authenticator, admin: str, pay: str) -> None:
    """From the payments list to the payment, then a partial refund with step-up."""
    await page.goto(f"{server.base_url}/console/payments")
    await page.get_by_role("link", name=pay).first.click()
    await page.wait_for_url(f"{server.base_url}/console/payments/{pay}")
    _age_sessions(server, admin)
    await page.get_by_role("link", name="Refund", exact=True).click()
    await page.wait_for_url(re.compile(r"/console/reauth\?next="))
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Authentication code").fill(app.code())
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url(f"{server.base_url}/console/payments/{pay}/refund")
    await page.get_by_label("Amount (USD)").fill("15.00")
    await page.get_by_label("Reason").select_option("requested_by_customer")
    await page.get_by_role("button", name="Refund").click()
    await page.wait_for_url(re.compile(rf"/console/payments/{pay}\?notice="))


async def _shows(page: Page, url: str, *texts: str) -> None:
    """Reload ``url`` until every text is on it (work done by the worker lands later)."""

    async def present() -> bool:
        await page.goto(url)
        body = await page.content()
        return all(text in body for text in texts)

    await eventually(present, seconds=WAIT_MS / 1000)


async def test_a_newcomer_refunds_a_shop_order_and_sees_every_consequence(
    server: Server,
    shop: Shop,
    browser: Browser,
    visit: Visit,
    receiver: Receiver,
    product: None,
) -> None:
    admin = unique_email("newcomer")
    created = cli(server, "create-admin", "--email", admin, "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    assert "/console/security" in created.stdout, created.stdout

    shopper, order_id, payment_id = await _buy(browser, server)

    page = visit.page
    page.set_default_timeout(WAIT_MS)
    app = await _enrol(page, server, admin)
    endpoint_url = await _add_endpoint(page, server, receiver)
    await _refund(page, server, app, admin, payment_id)
    base = server.base_url

    # The payment: the refund, its ledger entries and its audit trail.
    payment_url = f"{base}/console/payments/{payment_id}"
    await _shows(page, payment_url, "USD 15.00", "succeeded")
    refunds = page.locator("section", has=page.get_by_role("heading", name="Refunds"))
    refund_row = refunds.get_by_role("row", name=re.compile("rfd_"))
    assert re.search(r"succeeded.*USD\s+15\.00", await refund_row.inner_text(), re.S)
    ledger = page.locator("section", has=page.get_by_role("heading", name="Ledger entries"))
    # The payment's two postings and the refund's two reversing them.
    kinds = await ledger.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(k.strip() for k in kinds) == ["payment", "payment", "refund", "refund"]
    await screenshot(page, "console-newcomer-payment-refunded")

    # The ledger: still balanced; the vendor's account shows the refund's reversal.
    await page.goto(f"{base}/console/ledger")
    assert "Balanced: debits = credits" in await page.content()
    await screenshot(page, "console-newcomer-ledger-after-refund")
    await page.get_by_role("link", name=re.compile(r"^vendor_payable:")).click()
    await page.wait_for_url(re.compile(r"/console/ledger/accounts/"))
    entries = await page.locator("tbody").first.inner_text()
    assert "refund" in entries, entries
    assert "15.00" in entries, entries
    await screenshot(page, "console-newcomer-ledger-account-refund")

    # The audit log: the refund, by the administrator.
    await _shows(page, f"{base}/console/audit?actor={admin}", "refund.created")
    await screenshot(page, "console-newcomer-audit-refund")

    # The customer's mail.
    await eventually(
        lambda: read_mailbox(server.mail_dir, to=shopper, category="refund_issued"),
        seconds=WAIT_MS / 1000,
    )
    mail = read_mailbox(server.mail_dir, to=shopper, category="refund_issued")[-1]
    assert "15.00" in str(mail["Subject"])

    # The merchant's endpoint: refund.succeeded delivered, shown in its delivery log.
    await eventually(
        lambda: any(b"refund.succeeded" in r.body for r in receiver.received),
        seconds=WAIT_MS / 1000,
    )
    await _shows(page, endpoint_url, "refund.succeeded")
    delivery = page.locator("tr", has_text="refund.succeeded").first
    assert "delivered" in await delivery.inner_text()
    await screenshot(page, "console-newcomer-webhook-deliveries")
    # The order: partly refunded.
    await _shows(page, f"{base}/console/orders/{order_id}", "partially")
    assert visit.console_errors == []
