"""The sandbox hosted payment page in a real browser, against a real tillpay process
(the harness: ``tests/e2e/harness.py``; screenshots in ``artifacts/screenshots/``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.e2e.harness import (
    Server,
    Shop,
    Visit,
    csp_of,
    eventually,
    needs_browser,
    screenshot,
)
from tests.payments.helpers import DECLINED_CARD, GOOD_CARD

pytestmark = needs_browser


async def _open_and_pay(
    visit: Visit, server: Server, payment: dict[str, Any], card: str, *, name: str
) -> str:
    """Open the hosted page, check it, type ``card``, press Pay; returns the final URL."""
    page = visit.page
    response = await page.goto(payment["next_action"]["redirect_url"])
    assert response is not None
    assert response.status == 200
    csp = csp_of(await response.header_value("content-security-policy"))
    assert csp["default-src"] == "'none'"
    assert csp["form-action"] == "'self'"
    assert all("unsafe-" not in value for value in csp.values()), csp

    assert await page.locator(".amount").inner_text() == "USD 25.99"
    # The page's own stylesheet is allowed by its CSP hash, so it really applies.
    pay = page.get_by_role("button", name="Pay")
    background = await pay.evaluate("button => getComputedStyle(button).backgroundColor")
    assert background == "rgb(26, 86, 219)"

    await page.get_by_label("Test card number").fill(card)
    await screenshot(page, f"sandbox-{name}-filled")
    assert visit.console_errors == []

    await pay.click()
    await page.wait_for_url(lambda url: url.startswith(f"{server.base_url}/?"))
    await screenshot(page, f"sandbox-{name}-result")
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

    await eventually(paid)
    assert await shop.payment_status(customer, payment["id"]) == "succeeded"
    await eventually(lambda: _webhook_processed(server, payment))


async def test_a_declined_card_fails_the_payment_and_the_order_stays_pending(
    server: Server, shop: Shop, visit: Visit
) -> None:
    customer = await shop.account()
    order = await shop.order(customer)
    payment = await shop.pay(customer, order["id"])

    final = await _open_and_pay(visit, server, payment, DECLINED_CARD, name="declined")

    assert final == f"{server.base_url}/?payment_id={payment['id']}"

    await eventually(lambda: _webhook_processed(server, payment))
    assert await shop.payment_status(customer, payment["id"]) == "failed"
    assert await shop.order_status(customer, order["id"]) == "pending_payment"
    # Back on the hosted page, the browser is told the checkout failed.
    await visit.page.goto(payment["next_action"]["redirect_url"])
    assert "This checkout was declined." in await visit.page.locator(".result").inner_text()
    await screenshot(visit.page, "sandbox-declined-page-after")


async def test_the_api_docs_render_offline_under_a_strictcsp_of(
    server: Server, visit: Visit
) -> None:
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
    csp = csp_of(await response.header_value("content-security-policy"))
    assert csp["script-src"] == "'self'"
    await page.locator(".opblock").first.wait_for(timeout=15_000)
    assert await page.locator(".opblock").count() > 20
    assert all(url.startswith(server.base_url) for url in visit.requests), visit.requests
    assert visit.console_errors == []
    await screenshot(page, "api-docs")
