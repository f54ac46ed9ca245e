"""The sandbox hosted payment page in a real browser, against a real tillpay process.

A ``tillpay serve`` process (SQLite, in-process worker) runs on a free loopback port; the
shop side is driven over HTTP with httpx and the customer's browser is Debian's headless
Chromium driven by Playwright. Screenshots go to ``artifacts/screenshots/``.

Locally the module is skipped when Chromium or Playwright is missing; with ``CI=true`` that
is a failure (``.ci/run`` installs the ``chromium`` package).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.accounts.helpers import PASSWORD, bearer, latest_token, unique_email
from tests.payments.helpers import DECLINED_CARD, GOOD_CARD
from tillpay.notifications.mail import read_mailbox

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

CHROMIUM = Path("/usr/bin/chromium")
# The flags the machine's own probe uses: without the background-networking ones Chromium
# keeps trying to reach Google's hosts through a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PRICE = 2599  # USD 25.99
SERVER_START_TIMEOUT = 60.0
WEBHOOK_TIMEOUT = 20.0


def _missing() -> str | None:
    if not HAVE_PLAYWRIGHT:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(
    MISSING is not None and not IN_CI, reason=f"browser test: {MISSING}"
)


# ----------------------------------------------------------------------------- server


@dataclass
class Server:
    base_url: str
    data_dir: Path
    database: Path

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement on the server's SQLite database (committed at once)."""
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(statement, params).fetchall()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(port: int, data_dir: Path, database: Path) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    # Nothing from the caller's TILLPAY_* environment may leak into the server under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
    env.update(
        TILLPAY_HOST="127.0.0.1",
        TILLPAY_PORT=str(port),
        TILLPAY_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        TILLPAY_PUBLIC_BASE_URL=base,
        TILLPAY_ENVIRONMENT="test",
        TILLPAY_SECRET_KEY=secrets.token_urlsafe(36),  # 48 characters,
        TILLPAY_PAYMENT_RETURN_URLS=f'["{base}/"]',
        TILLPAY_RATELIMIT_POLICIES=(
            '{"auth":"1000/minute","payments":"1000/minute","webhooks":"1000/minute"}'
        ),
        TILLPAY_DATA_DIR=str(data_dir),
        TILLPAY_WORKER_IN_PROCESS="true",
    )
    return env


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tillpay exited with {process.returncode}:\n{_tail(log)}", pytrace=False)
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"tillpay did not become healthy:\n{_tail(log)}", pytrace=False)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A migrated, running ``tillpay serve`` process; always terminated afterwards."""
    data_dir = tmp_path_factory.mktemp("tillpay-e2e")
    database = data_dir / "db.sqlite"
    port = _free_port()
    env = _server_env(port, data_dir, database)
    command = [sys.executable, "-m", "tillpay.cli"]
    # cwd is the temp dir so that no stray .env file is read.
    migrated = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [*command, "migrate"], cwd=data_dir, env=env, capture_output=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")
    log = data_dir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [*command, "serve"], cwd=data_dir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_healthy(process, env["TILLPAY_PUBLIC_BASE_URL"], log)
        yield Server(env["TILLPAY_PUBLIC_BASE_URL"], data_dir, database)
    finally:
        _stop(process)


# ----------------------------------------------------------------------------- shop API


class Shop:
    """The shop's side over real HTTP: accounts, catalog, cart, checkout, payments."""

    def __init__(self, server: Server, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    async def account(self, *, role: str = "CUSTOMER") -> dict[str, str]:
        """Register, verify by the emailed link, set the role, sign in: auth headers."""
        email = unique_email(role.lower())
        registered = await self.http.post(
            "/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 202, registered.text
        # The mail is written by a background task after the 202: wait for it.
        await _eventually(lambda: _has_mail(self.server.mail_dir, email), seconds=10)
        token = latest_token(self.server.mail_dir, email, "verify_email")
        verified = await self.http.post("/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 204, verified.text
        if role != "CUSTOMER":
            # There is no API to become a vendor: an operator sets the role.
            self.server.sql("UPDATE users SET role = ? WHERE email = ?", role, email)
        login = await self.http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return bearer(login.json()["access_token"])

    async def order(self, customer: dict[str, str]) -> dict[str, Any]:
        """A pending_payment order for one product priced ``PRICE``."""
        vendor = await self.account(role="VENDOR")
        product = await self.http.post(
            "/v1/products",
            json={
                "title": "Browser-tested mug",
                "currency": "USD",
                "sku": f"E2E-{secrets.token_hex(4)}",
                "price_amount": PRICE,
                "stock": 5,
            },
            headers=vendor,
        )
        assert product.status_code == 201, product.text
        variant_id = product.json()["variants"][0]["id"]
        added = await self.http.post(
            "/v1/cart/lines", json={"variant_id": variant_id, "quantity": 1}, headers=customer
        )
        assert added.status_code == 200, added.text
        checkout = await self.http.post(
            "/v1/checkout", headers={**customer, "Idempotency-Key": str(uuid.uuid4())}
        )
        assert checkout.status_code == 201, checkout.text
        return checkout.json()

    async def pay(self, customer: dict[str, str], order_id: str) -> dict[str, Any]:
        """A sandbox payment waiting for the hosted page."""
        created = await self.http.post(
            f"/v1/orders/{order_id}/payments",
            json={"provider": "sandbox", "return_url": f"{self.server.base_url}/"},
            headers={**customer, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert created.status_code == 201, created.text
        payment: dict[str, Any] = created.json()
        assert payment["status"] == "requires_action"
        return payment

    async def order_status(self, customer: dict[str, str], order_id: str) -> str:
        response = await self.http.get(f"/v1/orders/{order_id}", headers=customer)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    async def payment_status(self, customer: dict[str, str], payment_id: str) -> str:
        response = await self.http.get(f"/v1/payments/{payment_id}", headers=customer)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])


@pytest.fixture(scope="module")
async def shop(server: Server) -> AsyncIterator[Shop]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield Shop(server, http)


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, with a fresh temporary profile (Playwright's default)."""
    if MISSING is not None:
        pytest.fail(f"the browser test is mandatory on CI: {MISSING}", pytrace=False)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Visit:
    page: Page
    requests: list[str]
    console_errors: list[str]


@pytest.fixture
async def visit(browser: Browser) -> AsyncIterator[Visit]:
    """A new browser context whose every request URL and console error is recorded."""
    context = await browser.new_context(viewport={"width": 800, "height": 700})
    page = await context.new_page()
    visit = Visit(page, [], [])
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on(
        "console",
        lambda message: (
            visit.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: visit.console_errors.append(str(error)))
    try:
        yield visit
    finally:
        await context.close()


def _csp(header: str | None) -> dict[str, str]:
    assert header, "the hosted page has no Content-Security-Policy"
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {d[0]: (d[1] if len(d) > 1 else "") for d in directives}


async def _screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def _open_and_pay(
    visit: Visit, server: Server, payment: dict[str, Any], card: str, *, name: str
) -> str:
    """Open the hosted page, check it, type ``card``, press Pay; returns the final URL."""
    page = visit.page
    response = await page.goto(payment["next_action"]["redirect_url"])
    assert response is not None
    assert response.status == 200
    csp = _csp(await response.header_value("content-security-policy"))
    assert csp["default-src"] == "'none'"
    assert csp["form-action"] == "'self'"
    assert all("unsafe-" not in value for value in csp.values()), csp

    assert await page.locator(".amount").inner_text() == "USD 25.99"
    # The page's own stylesheet is allowed by its CSP hash, so it really applies.
    pay = page.get_by_role("button", name="Pay")
    background = await pay.evaluate("button => getComputedStyle(button).backgroundColor")
    assert background == "rgb(26, 86, 219)"

    await page.get_by_label("Test card number").fill(card)
    await _screenshot(page, f"sandbox-{name}-filled")
    assert visit.console_errors == []

    await pay.click()
    await page.wait_for_url(lambda url: url.startswith(f"{server.base_url}/?"))
    await _screenshot(page, f"sandbox-{name}-result")
    # Every request the browser made (page, form post, both redirects) stayed on tillpay.
    assert visit.requests[0] == payment["next_action"]["redirect_url"]
    assert all(url.startswith(f"{server.base_url}/") for url in visit.requests), visit.requests
    return page.url


def _webhook_processed(server: Server, payment: dict[str, Any]) -> bool:
    """Whether the worker delivered the sandbox's webhook for ``payment`` and tillpay
    processed it (joined on the sandbox session's reference)."""
    session_id = urlsplit(payment["next_action"]["redirect_url"]).path.rsplit("/", 1)[-1]
    rows = server.sql(
        "SELECT e.status FROM webhook_events e JOIN sandbox_sessions s "
        "ON e.reference = s.reference WHERE s.id = ?",
        session_id,
    )
    return rows == [("processed",)]


def _has_mail(mail_dir: Path, to: str) -> bool:
    return bool(read_mailbox(mail_dir, to=to, category="verify_email"))


async def _eventually(check: Callable[[], Any], seconds: float = WEBHOOK_TIMEOUT) -> None:
    """Poll ``check`` (sync or async) until it is true; TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return
            await asyncio.sleep(0.25)


# ----------------------------------------------------------------------------- tests


async def test_paying_with_the_success_card_returns_to_the_shop_and_the_order_becomes_paid(
    server: Server, shop: Shop, visit: Visit
) -> None:
    customer = await shop.account()
    order = await shop.order(customer)
    payment = await shop.pay(customer, order["id"])

    final = await _open_and_pay(visit, server, payment, GOOD_CARD, name="success")

    assert final == f"{server.base_url}/?payment_id={payment['id']}"

    async def paid() -> bool:
        return await shop.order_status(customer, order["id"]) == "paid"

    await _eventually(paid)
    assert await shop.payment_status(customer, payment["id"]) == "succeeded"
    await _eventually(lambda: _webhook_processed(server, payment))


async def test_a_declined_card_fails_the_payment_and_the_order_stays_pending(
    server: Server, shop: Shop, visit: Visit
) -> None:
    customer = await shop.account()
    order = await shop.order(customer)
    payment = await shop.pay(customer, order["id"])

    final = await _open_and_pay(visit, server, payment, DECLINED_CARD, name="declined")

    assert final == f"{server.base_url}/?payment_id={payment['id']}"

    await _eventually(lambda: _webhook_processed(server, payment))
    assert await shop.payment_status(customer, payment["id"]) == "failed"
    assert await shop.order_status(customer, order["id"]) == "pending_payment"
    # Back on the hosted page, the browser is told the checkout failed.
    await visit.page.goto(payment["next_action"]["redirect_url"])
    assert "This checkout was declined." in await visit.page.locator(".result").inner_text()
    await _screenshot(visit.page, "sandbox-declined-page-after")


async def test_the_api_docs_render_offline_under_a_strict_csp(server: Server, visit: Visit) -> None:
    """Swagger UI comes from this server only (no CDN) and runs without inline scripts."""
    page = visit.page
    # Anything not from the server under test is refused, as on a disconnected network.
    await page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(server.base_url)
            else route.abort("internetdisconnected")
        ),
    )
    response = await page.goto(f"{server.base_url}/docs")
    assert response is not None
    assert response.status == 200
    csp = _csp(await response.header_value("content-security-policy"))
    assert csp["script-src"] == "'self'"
    await page.locator(".opblock").first.wait_for(timeout=15_000)
    assert await page.locator(".opblock").count() > 20
    assert all(url.startswith(server.base_url) for url in visit.requests), visit.requests
    assert visit.console_errors == []
    await _screenshot(page, "api-docs")
