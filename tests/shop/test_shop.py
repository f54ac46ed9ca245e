"""The demo storefront over HTTP against the real app, on SQLite and PostgreSQL: what it
serves, to whom, and that its forms keep the API's rules (CSRF, sign-in, ownership,
verified email) through to a paid order with the sandbox card."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.console.helpers import ORIGIN, browser, csrf_of, post_form
from tests.foundation.test_settings import SAFE_PRODUCTION
from tests.payments.helpers import GOOD_CARD, Checkout
from tests.shop.helpers import add_to_cart, checkout, form_key, shop_sign_in
from tillpay.app import create_app
from tillpay.settings import Settings


def _scripts_have_nonce(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce, csp
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert scripts, "the shop page loads its script"
    assert all(f'nonce="{nonce.group(1)}"' in tag for tag in scripts), scripts
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


async def _product(shop: Shop, **extra: Any) -> dict[str, Any]:
    return await shop.product(await shop.vendor(), title=extra.pop("title", "Blue mug"), **extra)


def _shop_paths(settings: Settings) -> set[str]:
    return {
        path
        for route in create_app(settings).routes
        if (path := getattr(route, "path", "")).startswith("/shop")
    }


def test_production_serves_no_shop_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production without TILLPAY_SHOP_ENABLED has no /shop route at all (so a 404), and
    allows no return URL beyond its configured ones; an explicit true serves it."""
    monkeypatch.chdir("/")  # no .env file
    production = Settings(**SAFE_PRODUCTION)
    assert production.shop_on is False
    assert _shop_paths(production) == set()
    assert production.return_url_prefixes == SAFE_PRODUCTION["payment_return_urls"]
    enabled = Settings(**SAFE_PRODUCTION, shop_enabled=True)
    assert "/shop" in _shop_paths(enabled)
    assert enabled.return_url_prefixes[-1] == "https://api.shop.example/shop/"


async def test_the_shop_is_404_when_disabled(make_client: ClientFactory) -> None:
    async with make_client(shop_enabled=False) as client:
        assert (await client.get("/shop")).status_code == 404
        assert (await client.get("/shop/login")).status_code == 404
    async with make_client() as client:  # the test environment: on by default
        assert (await client.get("/shop")).status_code == 200


async def test_products_render_with_prices_and_scripts_carry_the_nonce(
    client: httpx.AsyncClient, accounts: Any
) -> None:
    shop = Shop(accounts)
    item = await _product(shop, title="Blue <b>mug</b>", price=2599)
    async with browser(client) as web:
        listing = await web.get("/shop")
        assert listing.status_code == 200
        assert "Blue mug" in listing.text  # the catalog strips tags at creation
        assert "USD 25.99" in listing.text
        assert f"/shop/products/{item['id']}" in listing.text
        _scripts_have_nonce(listing)
        detail = await web.get(f"/shop/products/{item['id']}")
        assert detail.status_code == 200
        assert "Sign in to buy" in detail.text
        _scripts_have_nonce(detail)


async def test_cart_add_change_and_remove(client: httpx.AsyncClient, accounts: Any) -> None:
    shop = Shop(accounts)
    item = await _product(shop, price=1000)
    customer = await shop.customer()
    async with browser(client) as web:
        assert (await shop_sign_in(web, customer)).status_code == 303
        added = await add_to_cart(web, item["id"], item["variants"][0]["id"])
        assert added.status_code == 303
        cart = await web.get("/shop/cart")
        assert "Blue mug" in cart.text
        assert "USD 10.00" in cart.text
        line_id = re.search(r'action="/shop/cart/lines/([A-Za-z0-9_]+)"', cart.text)
        assert line_id
        changed = await post_form(
            web,
            f"/shop/cart/lines/{line_id.group(1)}",
            {"csrf_token": csrf_of(cart.text), "quantity": "3"},
        )
        assert changed.status_code == 303
        cart = await web.get("/shop/cart")
        assert "USD 30.00" in cart.text
        # The API sees the same cart: one service behind both.
        api = await client.get("/v1/cart", headers=customer.headers)
        assert api.json()["lines"][0]["quantity"] == 3
        removed = await post_form(
            web,
            f"/shop/cart/lines/{line_id.group(1)}/remove",
            {"csrf_token": csrf_of(cart.text)},
        )
        assert removed.status_code == 303
        assert "Your cart is empty" in (await web.get("/shop/cart")).text


async def test_cart_and_checkout_require_sign_in(client: httpx.AsyncClient) -> None:
    async with browser(client) as web:
        cart = await web.get("/shop/cart")
        assert cart.status_code == 303
        assert cart.headers["location"] == "/shop/login?next=/shop/cart"
        checkout_post = await post_form(web, "/shop/checkout", {"key": "k" * 20})
        assert checkout_post.status_code == 303
        assert checkout_post.headers["location"].startswith("/shop/login")


async def test_checkout_needs_a_verified_email(client: httpx.AsyncClient, accounts: Any) -> None:
    shop = Shop(accounts)
    item = await _product(shop)
    customer = await shop.customer(verified=False)
    async with browser(client) as web:
        await shop_sign_in(web, customer)
        await add_to_cart(web, item["id"], item["variants"][0]["id"])
        cart = await web.get("/shop/cart")
        assert "Confirm your email address to check out" in cart.text
        refused = await post_form(
            web, "/shop/checkout", {"csrf_token": csrf_of(cart.text), "key": "k" * 24}
        )
        assert refused.status_code == 403
        assert "Verify your email address first." in refused.text


async def test_another_shoppers_order_is_404(client: httpx.AsyncClient, accounts: Any) -> None:
    shop = Shop(accounts)
    owner, other = await shop.customer(), await shop.customer()
    order = await shop.order(owner)
    async with browser(client) as web:
        await shop_sign_in(web, owner)
        assert (await web.get(f"/shop/orders/{order['id']}")).status_code == 200
    async with browser(client) as web:
        await shop_sign_in(web, other)
        assert (await web.get(f"/shop/orders/{order['id']}")).status_code == 404
        assert (await web.get(f"/shop/orders/{order['id']}/status")).status_code == 404


async def test_a_post_without_the_csrf_token_or_from_another_site_is_403(
    client: httpx.AsyncClient, accounts: Any
) -> None:
    shop = Shop(accounts)
    item = await _product(shop)
    customer = await shop.customer()
    variant = item["variants"][0]["id"]
    async with browser(client) as web:
        await shop_sign_in(web, customer)
        token = csrf_of((await web.get(f"/shop/products/{item['id']}")).text)
        body = {"variant_id": variant, "quantity": "1"}
        assert (await post_form(web, "/shop/cart/lines", body)).status_code == 403
        cross = await post_form(
            web,
            "/shop/cart/lines",
            {**body, "csrf_token": token},
            **{"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        foreign = await post_form(
            web, "/shop/cart/lines", {**body, "csrf_token": token}, Origin="https://evil.example"
        )
        assert foreign.status_code == 403
    # The sign-in form (anonymous) is guarded the same way.
    async with browser(client) as anonymous:
        await anonymous.get("/shop/login")
        sent = {"email": customer.email, "password": customer.password}
        assert (await post_form(anonymous, "/shop/login", sent)).status_code == 403
        assert (await client.get("/v1/cart", headers=customer.headers)).json()["lines"] == []


async def test_registration_tells_where_the_mail_is_and_signs_in(
    client: httpx.AsyncClient, accounts: Any
) -> None:
    async with browser(client) as web:
        page = await web.get("/shop/register")
        email = "new.shopper@shop.example"
        done = await post_form(
            web,
            "/shop/register",
            {
                "csrf_token": csrf_of(page.text),
                "email": email,
                "password": "a" * 6 + " long pass 42",
            },
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/shop/registered"
        shown = await web.get("/shop/registered")
        # Tests run in the test environment: no dev mailbox link outside development.
        assert "/dev/mail" not in shown.text
        await accounts.verify(Account(email=email, password=""))


async def test_a_full_buy_with_the_sandbox_card_marks_the_order_paid(
    client: httpx.AsyncClient, accounts: Any
) -> None:
    shop = Shop(accounts)
    pay = Checkout(shop)
    item = await _product(shop, price=2599)
    customer = await shop.customer()
    async with browser(client) as web:
        await shop_sign_in(web, customer)
        await add_to_cart(web, item["id"], item["variants"][0]["id"])
        order_id = await checkout(web)
        order_page = await web.get(f"/shop/orders/{order_id}")
        assert order_page.status_code == 200
        assert "Complete your order" in order_page.text
        started = await post_form(
            web,
            f"/shop/orders/{order_id}/pay",
            {
                "csrf_token": csrf_of(order_page.text),
                "key": form_key(order_page.text),
                "provider": "sandbox",
            },
        )
        assert started.status_code == 303, started.text
        hosted = started.headers["location"]
        assert "/sandbox/checkout/" in hosted
        returned = await pay.submit_card({"next_action": {"redirect_url": hosted}}, GOOD_CARD)
        assert returned.status_code == 303
        # tillpay's return route sends the browser back to the shop's own order page.
        back = await web.get(returned.headers["location"])
        assert back.status_code == 303
        assert f"/shop/orders/{order_id}?payment_id=" in back.headers["location"]
        await pay.deliver_webhooks()
        await pay.process_webhooks()
        paid = await web.get(f"/shop/orders/{order_id}")
        assert "Thank you for your order" in paid.text
        assert "Receipt" in paid.text
        status = await web.get(f"/shop/orders/{order_id}/status")
        assert status.json()["state"] == "paid:succeeded"
    api = await client.get(f"/v1/orders/{order_id}", headers=customer.headers)
    assert api.json()["status"] == "paid"
    assert ORIGIN.startswith("https://")


async def test_an_idle_shopper_signs_in_again_after_the_configured_timeout(
    make_client: ClientFactory, clean_db: None, mail_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_client(shop_idle_timeout_seconds=600) as client:
        customer = await Shop(Accounts(client, mail_dir)).customer()
        async with browser(client) as web:
            assert (await shop_sign_in(web, customer)).status_code == 303
            assert (await web.get("/shop/cart")).status_code == 200
            start = time.time()
            monkeypatch.setattr("tillpay.shop.session.time.time", lambda: start + 590)
            assert (await web.get("/shop/cart")).status_code == 200  # activity slides it
            monkeypatch.setattr("tillpay.shop.session.time.time", lambda: start + 590 + 605)
            idle = await web.get("/shop/cart")
            assert idle.status_code == 303
            assert idle.headers["location"].startswith("/shop/login")
