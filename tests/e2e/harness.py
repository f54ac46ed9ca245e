"""The browser-test harness: a real ``tillpay serve`` process (SQLite, in-process worker)
on a free loopback port, the shop's side over HTTP (httpx), and Debian's headless
Chromium driven by Playwright. Fixtures are in ``tests/e2e/conftest.py``; screenshots go
to ``artifacts/screenshots/``.

Locally a browser test is skipped when Chromium or Playwright is missing; with ``CI=true``
that is a failure (``.ci/run`` installs the ``chromium`` package).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import PASSWORD, bearer, latest_token, unique_email
from tillpay.notifications.mail import extract_links, read_mailbox

try:
    from playwright.async_api import Page
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
#: Put in a browser-test module: skipped locally without a browser, failing on CI.
needs_browser = pytest.mark.skipif(
    MISSING is not None and not IN_CI, reason=f"browser test: {MISSING}"
)


# ----------------------------------------------------------------------------- server


@dataclass
class Server:
    base_url: str
    data_dir: Path
    database: Path
    #: The server's environment: run the CLI with it (``tillpay create-admin``) to act on
    #: the same database and settings.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement on the server's SQLite database (committed at once)."""
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(statement, params).fetchall()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    port: int, data_dir: Path, database: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment; ``extra`` (``TILLPAY_*`` names only) comes last."""
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
    for name, value in (extra or {}).items():
        assert name.startswith("TILLPAY_"), f"not a tillpay setting: {name}"
        env[name] = value
    return env


TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def cli(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``tillpay <args>`` as an operator would, on the server's database and settings."""
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [*TILLPAY, *args],
        cwd=server.data_dir,
        env=server.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tillpay exited with {process.returncode}:\n{tail(log)}", pytrace=False)
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"tillpay did not become healthy:\n{tail(log)}", pytrace=False)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


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
        await eventually(lambda: has_mail(self.server.mail_dir, email), seconds=10)
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


# ----------------------------------------------------------------------------- browser


@dataclass
class Visit:
    page: Page
    requests: list[str]
    console_errors: list[str]


def csp_of(header: str | None) -> dict[str, str]:
    assert header, "the hosted page has no Content-Security-Policy"
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {d[0]: (d[1] if len(d) > 1 else "") for d in directives}


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """``artifacts/screenshots/NAME.png``: the whole page, or the viewport only."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


# ----------------------------------------------------------------------------- shop pages


async def register_and_sign_in(page: Page, server: Server, *, shots: bool = True) -> str:
    """Register in /shop, confirm by the mailed link, sign in; answers the email."""
    email = unique_email("shopper")
    response = await page.goto(f"{server.base_url}/shop/register")
    assert response is not None
    assert response.status == 200, await page.content()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    if shots:
        await screenshot(page, "shop-register")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create account").click()
    assert page.url == f"{server.base_url}/shop/registered", await page.content()
    if shots:
        await screenshot(page, "shop-registered")
    await eventually(lambda: has_mail(server.mail_dir, email), seconds=10)
    link = extract_links(read_mailbox(server.mail_dir, to=email, category="verify_email")[-1])[0]
    await page.goto(link)
    await page.get_by_role("button", name="Confirm").click()
    assert "Email address confirmed" in await page.content()
    await page.goto(f"{server.base_url}/shop/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    if shots:
        await screenshot(page, "shop-login")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{server.base_url}/shop")
    return email


async def order_in_shop(page: Page, server: Server, title: str, *, shots: bool) -> str:
    """Add the product called ``title`` to the cart and check out; answers the order
    page's URL."""
    await page.goto(f"{server.base_url}/shop")
    if shots:
        await screenshot(page, "shop-products")
    await page.get_by_role("link", name=title).click()
    if shots:
        await screenshot(page, "shop-product")
    await page.get_by_role("button", name="Add to cart").click()
    await page.wait_for_url(f"{server.base_url}/shop/cart?notice=shop_added")
    if shots:
        await screenshot(page, "shop-cart")
    await page.get_by_role("button", name="Check out").click()
    await page.wait_for_url(f"{server.base_url}/shop/orders/*")
    return page.url


async def pay_in_shop(page: Page, server: Server, card: str, button: str) -> None:
    """Press ``button`` on the order page and pay on the sandbox's hosted page."""
    await page.get_by_role("button", name=button).click()
    await page.wait_for_url(f"{server.base_url}/sandbox/checkout/*")
    await page.get_by_label("Test card number").fill(card)
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(f"{server.base_url}/shop/orders/*?payment_id=*")


def has_mail(mail_dir: Path, to: str) -> bool:
    return bool(read_mailbox(mail_dir, to=to, category="verify_email"))


async def eventually(check: Callable[[], Any], seconds: float = WEBHOOK_TIMEOUT) -> None:
    """Poll ``check`` (sync or async) until it is true; TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return
            await asyncio.sleep(0.25)


def delivery_settings(receiver_port: int) -> dict[str, str]:
    """Server settings that let merchant webhooks reach a local receiver (loopback, its
    port), as ``tests/webhooks/conftest.py``'s ``webhook_settings`` does in-process."""
    return {
        "TILLPAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        "TILLPAY_WEBHOOKS_ALLOWED_PORTS": json.dumps([receiver_port]),
    }
