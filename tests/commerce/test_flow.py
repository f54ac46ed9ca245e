"""The commerce happy path: vendor lists a product, customer buys it, stock follows."""

from __future__ import annotations

from tests.commerce.helpers import Shop
from tests.http.test_errors import assert_problem


async def test_customer_checks_out_a_cart_into_a_pending_order(shop: Shop) -> None:
    vendor = await shop.vendor()
    customer = await shop.customer()
    product = await shop.product(vendor, price=1500, stock=3)
    variant_id = product["variants"][0]["id"]
    cart = (await shop.add_to_cart(customer, variant_id, 2)).json()
    assert cart["subtotal_amount"] == 3000
    assert cart["checkout_ready"] is True
    response = await shop.checkout(customer)
    assert response.status_code == 201
    order = response.json()
    assert order["status"] == "pending_payment"
    assert order["total_amount"] == 3000
    assert order["currency"] == "USD"
    assert order["lines"][0]["unit_price_amount"] == 1500
    listed = await shop.client.get(f"/v1/products/{product['id']}")
    assert listed.json()["variants"][0]["stock"] == 1
    empty = await shop.client.get("/v1/cart", headers=customer.headers)
    assert empty.json()["lines"] == []


async def test_cancelling_returns_the_stock(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    order = await shop.order(customer, vendor, stock=2)
    response = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    product = await shop.client.get(f"/v1/products/{order['lines'][0]['product_id']}")
    assert product.json()["variants"][0]["stock"] == 2
    again = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert_problem(again, 409)


async def test_same_idempotency_key_replays_the_order(shop: Shop) -> None:
    vendor = await shop.vendor()
    customer = await shop.customer()
    product = await shop.product(vendor, stock=5)
    await shop.add_to_cart(customer, product["variants"][0]["id"])
    first = await shop.checkout(customer, key="checkout-1")
    second = await shop.checkout(customer, key="checkout-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"


async def test_unverified_customer_cannot_check_out(shop: Shop) -> None:
    vendor = await shop.vendor()
    customer = await shop.customer(verified=False)
    product = await shop.product(vendor)
    await shop.add_to_cart(customer, product["variants"][0]["id"])
    body = assert_problem(await shop.checkout(customer), 403)
    assert body["code"] == "email_not_verified"
