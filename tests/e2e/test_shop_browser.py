"""The demo storefront in a real browser (Debian's headless Chromium via Playwright)
against a real ``tillpay serve`` process: register, confirm by the mailed link, sign in,
buy with the sandbox card and watch a second tab turn paid without reloading; a declined
card, its clear message and a successful retry. Screenshots: artifacts/screenshots/shop-*.

The server, browser and helpers are the harness's (``tests/e2e/conftest.py``: one
process per module); with ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.accounts.helpers import PASSWORD, unique_email
from tests.e2e.harness import (
    Server,
    Shop,
    Visit,
    eventually,
    has_mail,
    needs_browser,
    screenshot,
)
from tests.payments.helpers import DECLINED_CARD, GOOD_CARD
from tillpay.notifications.mail import extract_links, read_mailbox

pytestmark = needs_browser


@pytest.fixture(scope="module")
async def product(shop: Shop) -> str:
    """A product to buy, listed by a vendor over the API."""
    vendor = await shop.account(role="VENDOR")
    created = await shop.http.post(
        "/v1/products",
        json={
            "title": "Stoneware mug",
            "description": "Hand-thrown, glazed in ocean blue.",
            "currency": "USD",
            "sku": "E2E-SHOP-MUG",
            "price_amount": 2599,
            "stock": 20,
        },
        headers=vendor,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _register_and_sign_in(page: Page, server: Server) -> str:
    email = unique_email("shopper")
    response = await page.goto(f"{server.base_url}/shop/register")
    assert response is not None
    assert response.status == 200, await page.content()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await screenshot(page, "shop-register")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create account").click()
    assert page.url == f"{server.base_url}/shop/registered", await page.content()
    await screenshot(page, "shop-registered")
    await eventually(lambda: has_mail(server.mail_dir, email), seconds=10)
    link = extract_links(read_mailbox(server.mail_dir, to=email, category="verify_email")[-1])[0]
    await page.goto(link)
    await page.get_by_role("button", name="Confirm").click()
    assert "Email address confirmed" in await page.content()
    await page.goto(f"{server.base_url}/shop/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await screenshot(page, "shop-login")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{server.base_url}/shop")
    return email


async def _order(page: Page, server: Server, product: str, *, shots: bool) -> str:
    """Add the product to the cart and check out; returns the order page's URL."""
    await page.goto(f"{server.base_url}/shop")
    if shots:
        await screenshot(page, "shop-products")
    await page.get_by_role("link", name="Stoneware mug").click()
    if shots:
        await screenshot(page, "shop-product")
    await page.get_by_role("button", name="Add to cart").click()
    await page.wait_for_url(f"{server.base_url}/shop/cart?notice=shop_added")
    if shots:
        await screenshot(page, "shop-cart")
    await page.get_by_role("button", name="Check out").click()
    await page.wait_for_url(f"{server.base_url}/shop/orders/*")
    return page.url


async def _pay(page: Page, server: Server, card: str, button: str) -> None:
    await page.get_by_role("button", name=button).click()
    await page.wait_for_url(f"{server.base_url}/sandbox/checkout/*")
    await page.get_by_label("Test card number").fill(card)
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(f"{server.base_url}/shop/orders/*?payment_id=*")


async def test_a_shopper_registers_buys_and_sees_the_order_turn_paid_live(
    server: Server, visit: Visit, product: str
) -> None:
    page = visit.page
    await _register_and_sign_in(page, server)
    order_url = await _order(page, server, product, shots=True)
    await screenshot(page, "shop-order-pending")

    # A second tab on the order page, left alone: it must turn paid by itself.
    watcher = await page.context.new_page()
    loads: list[str] = []
    watcher.on("load", lambda _page: loads.append(watcher.url))
    await watcher.goto(order_url)
    assert await watcher.get_by_text("Awaiting payment", exact=True).is_visible()

    await _pay(page, server, GOOD_CARD, "Pay USD 25.99")
    assert await page.get_by_role("heading", name="Thank you for your order").is_visible()
    await screenshot(page, "shop-order-paid")

    await watcher.get_by_role("heading", name="Thank you for your order").wait_for(timeout=20_000)
    assert await watcher.get_by_role("heading", name="Receipt").is_visible()
    assert loads == [order_url], "the watching tab reloaded instead of updating in place"
    await screenshot(watcher, "shop-order-paid-live")
    assert visit.console_errors == []


async def test_a_declined_card_shows_why_and_a_retry_succeeds(
    server: Server, visit: Visit, product: str
) -> None:
    page = visit.page
    await _register_and_sign_in(page, server)
    await _order(page, server, product, shots=False)

    await _pay(page, server, DECLINED_CARD, "Pay USD 25.99")
    alert = page.get_by_role("alert")
    assert "The card was declined." in await alert.inner_text()
    await screenshot(page, "shop-order-declined")

    await _pay(page, server, GOOD_CARD, "Try again")
    assert await page.get_by_role("heading", name="Thank you for your order").is_visible()
    assert visit.console_errors == []


async def test_the_shop_fits_a_360_px_screen(server: Server, visit: Visit, product: str) -> None:
    page = visit.page
    await page.set_viewport_size({"width": 360, "height": 740})
    await page.goto(f"{server.base_url}/shop")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px)"
    await screenshot(page, "shop-products-360")
    # Keyboard: the skip link comes first and focus is visible.
    await page.keyboard.press("Tab")
    focused = await page.evaluate("document.activeElement.className")
    assert focused == "skip-link"
