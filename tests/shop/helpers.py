"""Drive the demo shop like a browser (an https client with its own cookie jar, CSRF
tokens read from the rendered forms), on top of the console's browser helpers."""

from __future__ import annotations

import re

import httpx

from tests.accounts.helpers import Account
from tests.console.helpers import csrf_of, post_form

_KEY = re.compile(r'name="key" value="([^"]+)"')


def form_key(html: str) -> str:
    found = _KEY.search(html)
    assert found, "no idempotency key field in the page"
    return found.group(1)


async def shop_sign_in(web: httpx.AsyncClient, account: Account) -> httpx.Response:
    page = await web.get("/shop/login")
    assert page.status_code == 200, page.text
    return await post_form(
        web,
        "/shop/login",
        {"csrf_token": csrf_of(page.text), "email": account.email, "password": account.password},
    )


async def add_to_cart(web: httpx.AsyncClient, product_id: str, variant_id: str) -> httpx.Response:
    page = await web.get(f"/shop/products/{product_id}")
    assert page.status_code == 200, page.text
    return await post_form(
        web,
        "/shop/cart/lines",
        {"csrf_token": csrf_of(page.text), "variant_id": variant_id, "quantity": "1"},
    )


async def checkout(web: httpx.AsyncClient) -> str:
    """Check the cart out through its form; returns the new order's id."""
    cart = await web.get("/shop/cart")
    assert cart.status_code == 200, cart.text
    response = await post_form(
        web, "/shop/checkout", {"csrf_token": csrf_of(cart.text), "key": form_key(cart.text)}
    )
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]
