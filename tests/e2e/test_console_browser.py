"""The operator console in a real browser (Debian's headless Chromium via Playwright)
against a real ``tillpay serve`` process (the harness: ``tests/e2e/harness.py``).

An administrator with TOTP signs in with the code, finds a paid payment through the
Payments filters, refunds part of it through the step-up page, and follows the refund to
the ledger and to a merchant webhook endpoint created in the console (delivered, signed,
to a receiver on loopback); a dead provider event is replayed; cross-site posts, framing
and injected inline scripts are refused; every main page is photographed at 1280x800 and
the overview and payments at 360 px (artifacts/screenshots/console-*.png).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pyotp
import pytest
from playwright.async_api import Page, Route, ViewportSize
from standardwebhooks.webhooks import Webhook

from tests.accounts.helpers import PASSWORD, bearer
from tests.e2e.harness import (
    Server,
    Shop,
    Visit,
    csp_of,
    delivery_settings,
    eventually,
    needs_browser,
    screenshot,
)
from tests.payments.helpers import DECLINED_CARD, GOOD_CARD
from tests.webhooks.receiver import Receiver

pytestmark = needs_browser

WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 360, "height": 740}
#: Another site (cross-site to 127.0.0.1) and another origin of the same site (another
#: port); both are pages Playwright fulfils, so nothing listens there.
ATTACKER = "http://attacker.test"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server_settings(receiver: Receiver) -> dict[str, str]:
    """Let the server deliver merchant webhooks to the local receiver (loopback, its
    port), as ``tests/webhooks/conftest.py``'s ``webhook_settings`` does in-process."""
    return {
        **delivery_settings(receiver.port),
        "TILLPAY_WEBHOOKS_RETRY_SCHEDULE": "[0, 5, 300]",
        "TILLPAY_WEBHOOKS_TIMEOUT_SECONDS": "2",
    }


@dataclass
class Operator:
    """An administrator with TOTP; ``headers`` hold an API token signed in with 2FA."""

    email: str
    secret: str
    headers: dict[str, str]

    def code(self, server: Server) -> str:
        """A code for now; the step used last is forgotten first (a code is single-use
        and the tests sign in more than once in 30 s)."""
        server.sql("UPDATE users SET totp_last_step = NULL WHERE email = ?", self.email)
        return pyotp.TOTP(self.secret).now()


@dataclass
class Seed:
    """What the console shows: customers, orders and payments of every kind."""

    customer_email: str
    paid: dict[str, Any]  # the payment the operator refunds
    order_id: str
    customer_id: str
    endpoint_id: str
    payments: list[dict[str, Any]] = field(default_factory=list)


async def _email_of(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    me = await http.get("/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return str(me.json()["email"]), str(me.json()["id"])


@pytest.fixture(scope="module")
async def operator(server: Server, shop: Shop) -> Operator:
    headers = await shop.account(role="ADMIN")
    email, _ = await _email_of(shop.http, headers)
    # Enrolling needs a recent authentication: the sign-in just made is.
    enroll = await shop.http.post("/v1/auth/2fa/enroll", headers=headers)
    assert enroll.status_code == 200, enroll.text
    account = Operator(email, enroll.json()["secret"], {})
    confirm = await shop.http.post(
        "/v1/auth/2fa/confirm", json={"code": account.code(server)}, headers=headers
    )
    assert confirm.status_code == 200, confirm.text
    first = await shop.http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert first.json().get("mfa_required") is True, first.text
    second = await shop.http.post(
        "/v1/auth/login/mfa",
        json={"mfa_token": first.json()["mfa_token"], "code": account.code(server)},
    )
    assert second.status_code == 200, second.text
    account.headers = bearer(second.json()["access_token"])
    return account


async def _product(shop: Shop, vendor: dict[str, str], title: str, price: int) -> str:
    created = await shop.http.post(
        "/v1/products",
        json={
            "title": title,
            "currency": "USD",
            "sku": f"E2E-{uuid.uuid4().hex[:8]}",
            "price_amount": price,
            "stock": 50,
        },
        headers=vendor,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["variants"][0]["id"])


async def _checkout(shop: Shop, customer: dict[str, str], variants: list[str]) -> str:
    for variant in variants:
        added = await shop.http.post(
            "/v1/cart/lines", json={"variant_id": variant, "quantity": 1}, headers=customer
        )
        assert added.status_code == 200, added.text
    checkout = await shop.http.post(
        "/v1/checkout", headers={**customer, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert checkout.status_code == 201, checkout.text
    return str(checkout.json()["id"])


async def _pay(shop: Shop, customer: dict[str, str], order_id: str, card: str | None) -> Any:
    """A sandbox payment; with ``card``, its hosted page's form posted as a browser
    would (the browser itself is tested on that page in test_sandbox_browser.py)."""
    payment = await shop.pay(customer, order_id)
    if card is not None:
        hosted = await shop.http.get(payment["next_action"]["redirect_url"])
        assert hosted.status_code == 200, hosted.text
        action = re.search(r"action='([^']+)'", hosted.text)
        assert action is not None
        posted = await shop.http.post(action.group(1), data={"card_number": card})
        assert posted.status_code in (302, 303), posted.text
    return payment


@pytest.fixture(scope="module")
async def seed(server: Server, shop: Shop, operator: Operator, receiver: Receiver) -> Seed:
    # An endpoint made over the admin API, for every event: its log fills as we go.
    endpoint = await shop.http.post(
        "/v1/admin/webhook-endpoints",
        json={
            "url": f"http://127.0.0.1:{receiver.port}/hooks/order-system",
            "event_types": ["*"],
            "description": "Order system",
        },
        headers=operator.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    key = await shop.http.post(
        "/v1/admin/api-keys",
        json={
            "name": "Shop backend",
            "merchant": "acme",
            "scopes": ["payments:read", "payments:write", "refunds:write"],
        },
        headers=operator.headers,
    )
    assert key.status_code == 201, key.text

    vendor = await shop.account(role="VENDOR")
    mug = await _product(shop, vendor, "Stoneware mug", 2599)
    apron = await _product(shop, vendor, "Linen apron", 4200)
    board = await _product(shop, vendor, "Oak serving board", 1850)
    customers = [await shop.account() for _ in range(3)]

    made: list[tuple[dict[str, str], dict[str, Any], str | None]] = []
    plan: list[tuple[int, list[str], str | None]] = [
        (0, [mug], GOOD_CARD),  # the one refunded in the test
        (1, [apron, board], GOOD_CARD),
        (2, [board], GOOD_CARD),
        (1, [mug, mug], DECLINED_CARD),
        (2, [apron], GOOD_CARD),
        (0, [board], None),  # left on the hosted page
    ]
    for who, variants, card in plan:
        order_id = await _checkout(shop, customers[who], variants)
        made.append((customers[who], await _pay(shop, customers[who], order_id, card), card))

    async def settled() -> bool:
        for customer, payment, card in made:
            if card is None:
                continue
            want = "succeeded" if card == GOOD_CARD else "failed"
            if await shop.payment_status(customer, payment["id"]) != want:
                return False
        return True

    await eventually(settled)
    paid = made[0][1]
    email, customer_id = await _email_of(shop.http, customers[0])
    return Seed(
        customer_email=email,
        paid=paid,
        order_id=str(paid["order_id"]),
        customer_id=customer_id,
        endpoint_id=str(endpoint.json()["id"]),
        payments=[p for _, p, _ in made],
    )


@dataclass
class OtherOrigin:
    """A plain HTTP server on another loopback port: same site as tillpay (127.0.0.1),
    another origin. It answers GET ``path`` with ``pages[path]``."""

    url: str
    pages: dict[str, str]


@pytest.fixture(scope="module")
def other_origin() -> Iterator[OtherOrigin]:
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield OtherOrigin(f"http://127.0.0.1:{httpd.server_address[1]}", pages)
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- helpers


async def sign_in(page: Page, server: Server, operator: Operator, *, shots: bool = False) -> None:
    """Through the console's two forms: email + password, then the TOTP code."""
    await page.goto(f"{server.base_url}/console/login")
    await page.get_by_label("Email").fill(operator.email)
    await page.get_by_label("Password").fill(PASSWORD)
    if shots:
        await screenshot(page, "console-login")
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("Authentication code").fill(operator.code(server))
    if shots:
        await screenshot(page, "console-login-code")
    await page.get_by_role("button", name="Verify and sign in").click()
    await page.wait_for_url(f"{server.base_url}/console")


def age_sessions(server: Server, operator: Operator) -> None:
    """Make the operator's last authentication two hours old (step-up expired), as
    tests/console/test_admin_pages.py's ``_age_session`` does."""
    old = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None)
    server.sql(
        "UPDATE auth_sessions SET auth_time = ? "
        "WHERE user_id = (SELECT id FROM users WHERE email = ?)",
        old.isoformat(sep=" "),
        operator.email,
    )


async def shot(page: Page, name: str) -> None:
    """The viewport (not the whole long page) as artifacts/screenshots/console-NAME.png."""
    await screenshot(page, f"console-{name}", full_page=False)


async def wide(visit: Visit, server: Server, operator: Operator) -> Page:
    await visit.page.set_viewport_size(WIDE)
    await sign_in(visit.page, server, operator)
    return visit.page


# ----------------------------------------------------------------------------- tests


async def test_an_operator_refunds_part_of_a_payment_and_follows_it_everywhere(
    server: Server, visit: Visit, operator: Operator, seed: Seed, receiver: Receiver
) -> None:
    page = visit.page
    await page.set_viewport_size(WIDE)
    await sign_in(page, server, operator, shots=True)

    # A merchant endpoint for refunds, made in the console; its secret is shown once.
    await page.goto(f"{server.base_url}/console/webhooks/new")
    hook_url = f"http://127.0.0.1:{receiver.port}/hooks/console"
    await page.get_by_label("Endpoint URL").fill(hook_url)
    await page.get_by_label("Description").fill("Refund notifications")
    await page.get_by_label("refund.succeeded").check()
    await shot(page, "webhook-new")
    await page.get_by_role("button", name="Create endpoint").click()
    await page.get_by_role("heading", name="Endpoint created").wait_for()
    secret = await page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    await shot(page, "webhook-secret")
    await page.get_by_role("link", name="I have saved it — continue").click()
    endpoint_url = page.url

    # The paid payment, found by the customer's email and status.
    await page.get_by_role("link", name="Payments", exact=True).click()
    await page.get_by_label("Customer email").fill(seed.customer_email)
    await page.get_by_label("Status").select_option("succeeded")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/console/payments?*")
    rows = page.locator("tbody tr")
    assert await rows.count() == 1, await rows.all_inner_texts()
    await shot(page, "payments-filtered")
    await page.get_by_role("link", name=seed.paid["id"]).click()
    await page.wait_for_url(f"{server.base_url}/console/payments/{seed.paid['id']}")
    assert "USD 25.99" in await page.locator("main").inner_text()

    # The refund form; the sign-in ages before it is sent: step-up, then back to it.
    await page.get_by_role("link", name="Refund", exact=True).click()
    await page.wait_for_url(f"**/console/payments/{seed.paid['id']}/refund")
    await page.get_by_label("Amount (USD)").fill("10.00")
    await page.get_by_label("Reason").select_option("requested_by_customer")
    await shot(page, "refund")
    age_sessions(server, operator)
    await page.get_by_role("button", name="Refund").click()
    await page.wait_for_url("**/console/reauth?next=**")
    assert server.sql("SELECT count(*) FROM refunds") == [(0,)]
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Authentication code").fill(operator.code(server))
    await shot(page, "reauth")
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url(f"**/console/payments/{seed.paid['id']}/refund")
    await page.get_by_label("Amount (USD)").fill("10.00")
    await page.get_by_label("Reason").select_option("requested_by_customer")
    await page.get_by_role("button", name="Refund").click()
    await page.wait_for_url(f"**/console/payments/{seed.paid['id']}?notice=*")

    # The payment page: the refund, what is left.
    main = page.locator("main")
    await page.get_by_role("heading", name="Refunds").wait_for()
    refunds_section = page.locator("section", has=page.get_by_role("heading", name="Refunds"))
    assert "USD 10.00" in await refunds_section.inner_text()
    assert "USD 15.99" in await main.inner_text()  # refundable now
    await screenshot(page, "console-payment")

    # The ledger: the refund's reversal posted (and the books still balance).
    await page.get_by_role("link", name="Ledger", exact=True).click()
    ledger = await page.locator("main").inner_text()
    assert "Balanced" in ledger
    await shot(page, "ledger")
    # The vendor's payable account: the refund's reversal debits it by the amount.
    await page.get_by_role("link", name=re.compile(r"^vendor_payable:")).first.click()
    reversal = page.locator("tbody tr", has_text="refund").filter(has_text="USD 10.00")
    assert await reversal.count() == 1, await page.locator("tbody").inner_text()
    await shot(page, "ledger-account")

    # The endpoint's delivery log shows refund.succeeded, and the receiver verified it.
    async def delivered() -> bool:
        return any(r.path == "/hooks/console" for r in receiver.received)

    await eventually(delivered)
    request = next(r for r in receiver.received if r.path == "/hooks/console")
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "refund.succeeded"
    assert body["data"]["object"]["payment_id"] == seed.paid["id"]

    async def logged() -> bool:
        await page.goto(endpoint_url)
        return "refund.succeeded" in await page.locator("table.log").inner_text()

    await eventually(logged, seconds=10)
    assert "delivered" in await page.locator("table.log").inner_text()
    await shot(page, "webhook-detail")
    assert visit.console_errors == []


async def test_a_dead_provider_event_is_replayed(
    server: Server, visit: Visit, operator: Operator, seed: Seed
) -> None:
    # What running out of retries leaves behind: a stored provider event marked dead.
    event_id = server.sql(
        "SELECT id FROM webhook_events WHERE reference IN "
        "(SELECT reference FROM sandbox_sessions) AND status = 'processed' LIMIT 1"
    )[0][0]
    server.sql(
        "UPDATE webhook_events SET status = 'dead', attempts = 8, "
        "last_error = 'provider re-read failed: ProviderUnavailable' WHERE id = ?",
        event_id,
    )
    page = await wide(visit, server, operator)
    await page.get_by_role("link", name="Provider events").click()
    listed = page.locator("tbody tr", has_text=event_id)
    assert await listed.count() == 1
    await shot(page, "events")
    await listed.get_by_role("link").click()
    await page.wait_for_url(f"**/console/events/{event_id}")
    await shot(page, "event-detail")
    await page.get_by_role("button", name="Replay event").click()
    await page.wait_for_url("**notice=replayed*")

    async def processed() -> bool:
        rows = server.sql("SELECT status FROM webhook_events WHERE id = ?", event_id)
        return rows == [("processed",)]

    await eventually(processed)
    await page.goto(f"{server.base_url}/console/events?state=dead")
    assert "No events in this state" in await page.locator("tbody").inner_text()
    audited = server.sql("SELECT count(*) FROM audit_events WHERE action LIKE '%replay%'")
    assert audited[0][0] >= 1
    assert visit.console_errors == []


async def test_the_session_cookie_csp_and_framing_rules_hold_in_the_browser(
    server: Server, visit: Visit, operator: Operator, other_origin: OtherOrigin
) -> None:
    page = visit.page
    response = await page.goto(f"{server.base_url}/console/login")
    assert response is not None
    login_csp = csp_of(await response.header_value("content-security-policy"))
    assert login_csp["frame-ancestors"] == "'none'"
    await sign_in(page, server, operator)

    # The cookie: host-only, Secure (127.0.0.1 is a secure context to Chromium, so it
    # is stored and sent over plain http there), HttpOnly, SameSite=Strict.
    cookies = {c["name"]: c for c in await page.context.cookies()}
    cookie = cookies["__Host-tillpay_console"]
    assert cookie["secure"] is True
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"  # no Domain attribute: this host only
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("window.isSecureContext") is True

    # The page's CSP: a nonce for scripts, nothing unsafe, no framing.
    response = await page.goto(f"{server.base_url}/console")
    assert response is not None
    csp = csp_of(await response.header_value("content-security-policy"))
    assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{20,}'", csp["script-src"]), csp
    assert all("unsafe-" not in value for value in csp.values()), csp
    assert csp["frame-ancestors"] == "'none'"
    assert csp["default-src"] == "'none'"
    assert await response.header_value("x-frame-options") == "DENY"
    assert await page.evaluate("document.querySelectorAll('script:not([nonce])').length") == 0
    # (Chromium hides the nonce attribute's value from the DOM once the page ran.)

    # An inline script injected into the page without the nonce does not run; Chromium
    # reports the violation.
    violation = await page.evaluate(
        """() => new Promise((resolve) => {
            window.injectedRan = false;
            document.addEventListener('securitypolicyviolation',
                (e) => resolve(e.violatedDirective), {once: true});
            const script = document.createElement('script');
            script.textContent = 'window.injectedRan = true';
            document.body.appendChild(script);
            setTimeout(() => resolve(null), 2000);
        })"""
    )
    assert violation in ("script-src", "script-src-elem"), violation
    assert await page.evaluate("window.injectedRan") is False
    assert any("Content Security Policy" in e for e in visit.console_errors), visit.console_errors
    visit.console_errors.clear()

    # Clickjacking: another origin framing the console gets a blocked, empty frame. (A
    # real local server: from a public site, as a page Playwright fulfils is to
    # Chromium, its Private Network Access rules block the loopback frame before its
    # headers are even read.)
    other_origin.pages["/frame"] = (
        f'<h1>Win a prize</h1><iframe src="{server.base_url}/console"></iframe>'
    )
    await page.goto(f"{other_origin.url}/frame")
    await page.wait_for_timeout(500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert len(framed) == 1
    content = await framed[0].evaluate("document.body ? document.body.innerText : ''")
    assert framed[0].url.startswith("chrome-error:"), framed[0].url
    assert "Overview" not in content, content
    assert "Sign in" not in content, content
    assert any("frame-ancestors 'none'" in e for e in visit.console_errors), visit.console_errors
    await screenshot(page, "console-framed-refused")


async def test_posts_from_another_site_or_origin_are_refused(
    server: Server, visit: Visit, operator: Operator, seed: Seed, other_origin: OtherOrigin
) -> None:
    page = await wide(visit, server, operator)
    target = seed.payments[2]["id"]
    before = server.sql("SELECT count(*) FROM refunds")
    # Another site: Chromium does not send the SameSite=Strict cookie, so the post
    # arrives signed out and is sent to sign in. Another origin of the same site (a
    # second port on 127.0.0.1): the cookie goes along, and the foreign Origin (and the
    # missing CSRF token) get a 403.
    for origin, refused in ((ATTACKER, "signed out"), (other_origin.url, "403")):
        forms = (
            f'<form method="post" action="{server.base_url}/console/payments/{target}/refund">'
            '<input name="csrf_token" value="guess"><input name="idempotency_key" '
            f'value="{uuid.uuid4().hex}"><input name="reason" value="other">'
            '<button id="refund">Claim</button></form>'
            f'<form method="post" action="{server.base_url}/console/logout">'
            '<input name="csrf_token" value="guess"><button id="logout">Log out</button></form>'
        )
        if origin == ATTACKER:
            await page.route(f"{origin}/**", _page_of(forms))
        else:
            other_origin.pages["/evil"] = forms
        for button in ("refund", "logout"):
            await page.goto(f"{origin}/evil")
            async with page.expect_navigation() as navigation:
                await page.click(f"#{button}")
            answer = await navigation.value
            assert answer is not None
            if refused == "403":
                assert answer.status == 403, (origin, button, answer.status)
                assert "could not be verified" in await page.locator("main").inner_text()
            else:
                assert page.url.startswith(f"{server.base_url}/console/login"), page.url
            await screenshot(page, f"console-cross-{'site' if origin == ATTACKER else 'origin'}")
    # Nothing changed: no refund, and the session still signed in.
    assert server.sql("SELECT count(*) FROM refunds") == before
    await page.goto(f"{server.base_url}/console")
    assert page.url == f"{server.base_url}/console"
    assert await page.get_by_role("button", name="Sign out").is_visible()


def _page_of(html: str) -> Callable[[Route], Awaitable[None]]:
    """A route handler answering ``html`` (a page on an origin nothing listens on)."""

    async def fulfil(route: Route) -> None:
        await route.fulfill(content_type="text/html", body=html)

    return fulfil


async def test_every_main_page_looks_right_wide_and_at_360_px(
    server: Server, visit: Visit, operator: Operator, seed: Seed
) -> None:
    page = await wide(visit, server, operator)
    base = server.base_url
    pages = {
        "overview": "/console",
        "payments": "/console/payments",
        "payment-detail": f"/console/payments/{seed.payments[1]['id']}",
        "refund-form": f"/console/payments/{seed.payments[1]['id']}/refund",
        "orders": "/console/orders",
        "order-detail": f"/console/orders/{seed.order_id}",
        "customers": "/console/customers",
        "customer-detail": f"/console/customers/{seed.customer_id}",
        "vendors": "/console/vendors",
        "ledger": "/console/ledger",
        "api-keys": "/console/api-keys",
        "audit": "/console/audit",
        "provider-events": "/console/events?state=all",
        "webhooks": "/console/webhooks",
        "webhook-endpoint": f"/console/webhooks/{seed.endpoint_id}",
        "activity": "/console/activity",
    }
    for name, path in pages.items():
        response = await page.goto(base + path)
        assert response is not None
        assert response.status == 200, (path, response.status)
        assert page.url == base + path, f"{path} went to {page.url}"
        if name == "activity":
            # The live feed's socket (ticket from a CSRF-checked POST, then /v1/ws).
            await page.locator("[data-activity-status].live-on").wait_for(timeout=10_000)
        if name == "overview":
            await page.locator("[data-live-status].live-on").wait_for(timeout=10_000)
        await shot(page, f"page-{name}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDE["width"], f"{path} scrolls sideways at 1280 px ({width} px)"
    assert visit.console_errors == []

    await page.set_viewport_size(NARROW)
    for name in ("overview", "payments", "payment-detail"):
        await page.goto(base + pages[name])
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW["width"], f"{name} scrolls sideways at 360 px ({width} px)"
        await shot(page, f"page-{name}-360")
        await screenshot(page, f"console-page-{name}-360-full")  # the whole (long) page


async def _focus_ring(page: Page) -> str:
    """The focused element's ring (tillpay.css draws it as a box-shadow)."""
    ring: str = await page.evaluate("getComputedStyle(document.activeElement).boxShadow")
    return ring


async def test_the_nav_and_a_form_are_reachable_by_keyboard_with_visible_focus(
    server: Server, visit: Visit, operator: Operator, seed: Seed
) -> None:
    page = await wide(visit, server, operator)
    await page.goto(f"{server.base_url}/console/payments")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip-link"
    reached: list[str] = []
    for _ in range(30):
        await page.keyboard.press("Tab")
        text = await page.evaluate("document.activeElement.textContent.trim()")
        reached.append(text)
        if text == "Payments":
            break
    assert "Payments" in reached, reached
    assert await _focus_ring(page) != "none"
    await shot(page, "focus-nav")
    # On into the filter form: its first field takes the focus, visibly.
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "f-q":
            break
    assert await page.evaluate("document.activeElement.id") == "f-q"
    assert await _focus_ring(page) != "none"
    await page.keyboard.type(seed.paid["id"])
    await shot(page, "focus-form")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console/payments?*")
    assert await page.locator("tbody tr").count() == 1
