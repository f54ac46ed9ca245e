"""The demo storefront in a real browser (Debian's headless Chromium via Playwright)
against a real ``tillpay serve`` process: register, confirm by the mailed link, sign in,
buy with the sandbox card and watch a second tab turn paid without reloading; a declined
card, its clear message and a successful retry. Screenshots: artifacts/screenshots/shop-*.

The server, browser and helpers are the harness's (``tests/e2e/conftest.py``: one
process per module); with ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import (
    Server,
    Shop,
    Visit,
    needs_browser,
    order_in_shop,
    pay_in_shop,
    register_and_sign_in,
    screenshot,
)
from tests.payments.helpers import DECLINED_CARD, GOOD_CARD

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


async def test_a_shopper_registers_buys_and_sees_the_order_turn_paid_live(
    server: Server, visit: Visit, product: str
) -> None:
    page = visit.page
    await register_and_sign_in(page, server)
    order_url = await order_in_shop(page, server, "Stoneware mug", shots=True)
    await screenshot(page, "shop-order-pending")

    # A second tab on the order page, left alone: it must turn paid by itself.
    watcher = await page.context.new_page()
    loads: list[str] = []
    watcher.on("load", lambda _page: loads.append(watcher.url))
    await watcher.goto(order_url)
    assert await watcher.get_by_text("Awaiting payment", exact=True).is_visible()

    await pay_in_shop(page, server, GOOD_CARD, "Pay USD 25.99")
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
    await register_and_sign_in(page, server)
    await order_in_shop(page, server, "Stoneware mug", shots=False)

    await pay_in_shop(page, server, DECLINED_CARD, "Pay USD 25.99")
    alert = page.get_by_role("alert")
    assert "The card was declined." in await alert.inner_text()
    await screenshot(page, "shop-order-declined")

    await pay_in_shop(page, server, GOOD_CARD, "Try again")
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
