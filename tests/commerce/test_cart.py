"""The cart: one per customer, strict quantities, current prices, flagged lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.kit.money import MAX_AMOUNT

# Each test signs in a few accounts; the per-IP auth policy is not what is tested here.
RELAXED_AUTH = {"auth": "1000/minute"}


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ratelimit_policies=RELAXED_AUTH) as c:
        yield c


async def cart_of(shop: Shop, customer: Account) -> dict[str, Any]:
    response = await shop.client.get("/v1/cart", headers=customer.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def variant_in_cart(
    shop: Shop, customer: Account, quantity: int = 1, **product: Any
) -> tuple[Account, dict[str, Any], dict[str, Any]]:
    """A vendor, its product and the cart after adding ``quantity`` of it."""
    vendor = await shop.vendor()
    item = await shop.product(vendor, **product)
    added = await shop.add_to_cart(customer, item["variants"][0]["id"], quantity)
    assert added.status_code == 200, added.text
    return vendor, item, added.json()


async def patch_variant(shop: Shop, vendor: Account, item: dict[str, Any], **changes: Any) -> None:
    variant_id = item["variants"][0]["id"]
    response = await shop.client.patch(
        f"/v1/products/{item['id']}/variants/{variant_id}", json=changes, headers=vendor.headers
    )
    assert response.status_code == 200, response.text


async def test_adding_the_same_variant_again_adds_up_in_one_line(shop: Shop) -> None:
    customer = await shop.customer()
    _, item, _ = await variant_in_cart(shop, customer, 2, price=700)
    cart = (await shop.add_to_cart(customer, item["variants"][0]["id"], 3)).json()
    assert len(cart["lines"]) == 1
    assert cart["lines"][0]["quantity"] == 5
    assert cart["subtotal_amount"] == 3500


async def test_changing_a_quantity_updates_the_line_and_subtotal(shop: Shop) -> None:
    customer = await shop.customer()
    _, _, cart = await variant_in_cart(shop, customer, 1, price=250)
    line_id = cart["lines"][0]["id"]
    response = await shop.client.patch(
        f"/v1/cart/lines/{line_id}", json={"quantity": 4}, headers=customer.headers
    )
    assert response.status_code == 200
    assert response.json()["lines"][0]["quantity"] == 4
    assert response.json()["subtotal_amount"] == 1000


async def test_removing_the_last_line_empties_the_cart_and_its_currency(shop: Shop) -> None:
    customer = await shop.customer()
    _, _, cart = await variant_in_cart(shop, customer, currency="EUR")
    assert cart["currency"] == "EUR"
    line_id = cart["lines"][0]["id"]
    response = await shop.client.delete(f"/v1/cart/lines/{line_id}", headers=customer.headers)
    assert response.status_code == 200
    assert response.json()["lines"] == []
    assert response.json()["currency"] is None
    assert (await cart_of(shop, customer))["lines"] == []


async def test_clearing_removes_every_line(shop: Shop) -> None:
    customer = await shop.customer()
    vendor, _, _ = await variant_in_cart(shop, customer)
    other = await shop.product(vendor)
    await shop.add_to_cart(customer, other["variants"][0]["id"])
    response = await shop.client.delete("/v1/cart", headers=customer.headers)
    assert response.status_code == 200
    cart = await cart_of(shop, customer)
    assert cart["lines"] == []
    assert cart["subtotal_amount"] == 0
    assert cart["checkout_ready"] is False


async def test_quantities_must_be_positive_integers_in_range(shop: Shop) -> None:
    customer = await shop.customer()
    _, item, cart = await variant_in_cart(shop, customer, 2)
    variant_id, line_id = item["variants"][0]["id"], cart["lines"][0]["id"]
    for quantity in (0, -1, 1.5, "2", True, 10**9):
        added = await shop.client.post(
            "/v1/cart/lines",
            json={"variant_id": variant_id, "quantity": quantity},
            headers=customer.headers,
        )
        assert assert_problem(added, 422)["code"] == "validation_error", quantity
        changed = await shop.client.patch(
            f"/v1/cart/lines/{line_id}", json={"quantity": quantity}, headers=customer.headers
        )
        assert assert_problem(changed, 422)["code"] == "validation_error", quantity
    assert (await cart_of(shop, customer))["lines"][0]["quantity"] == 2


async def test_a_line_above_the_configured_cap_is_quantity_too_large(shop: Shop) -> None:
    cap = shop.client.app.state.settings.cart_line_max_quantity  # type: ignore[attr-defined]
    customer = await shop.customer()
    _, item, cart = await variant_in_cart(shop, customer, cap - 1, stock=1000)
    variant_id, line_id = item["variants"][0]["id"], cart["lines"][0]["id"]
    merged = await shop.add_to_cart(customer, variant_id, 2)
    assert assert_problem(merged, 422)["code"] == "quantity_too_large"
    changed = await shop.client.patch(
        f"/v1/cart/lines/{line_id}", json={"quantity": cap + 1}, headers=customer.headers
    )
    assert assert_problem(changed, 422)["code"] == "quantity_too_large"
    assert (await cart_of(shop, customer))["lines"][0]["quantity"] == cap - 1


async def test_an_item_in_another_currency_is_currency_mismatch(shop: Shop) -> None:
    customer = await shop.customer()
    vendor, _, _ = await variant_in_cart(shop, customer, currency="USD")
    euro = await shop.product(vendor, currency="EUR")
    response = await shop.add_to_cart(customer, euro["variants"][0]["id"])
    assert assert_problem(response, 409)["code"] == "currency_mismatch"
    cart = await cart_of(shop, customer)
    assert len(cart["lines"]) == 1
    assert cart["currency"] == "USD"


async def test_inactive_products_and_variants_cannot_be_added(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    hidden_product = await shop.product(vendor)
    hidden_variant = await shop.product(vendor)
    response = await shop.client.patch(
        f"/v1/products/{hidden_product['id']}", json={"active": False}, headers=vendor.headers
    )
    assert response.status_code == 200
    await patch_variant(shop, vendor, hidden_variant, active=False)
    for item in (hidden_product, hidden_variant):
        assert_problem(await shop.add_to_cart(customer, item["variants"][0]["id"]), 404)
    assert (await cart_of(shop, customer))["lines"] == []


async def test_cart_shows_the_new_price_and_flags_the_change(shop: Shop) -> None:
    customer = await shop.customer()
    vendor, item, cart = await variant_in_cart(shop, customer, 2, price=1000)
    assert cart["lines"][0]["price_changed"] is False
    await patch_variant(shop, vendor, item, price_amount=1200)
    cart = await cart_of(shop, customer)
    line = cart["lines"][0]
    assert line["price_changed"] is True
    assert line["unit_price_amount"] == 1200
    assert cart["subtotal_amount"] == 2400
    assert cart["checkout_ready"] is True


async def test_cart_flags_a_deactivated_item_as_unavailable(shop: Shop) -> None:
    customer = await shop.customer()
    vendor, item, _ = await variant_in_cart(shop, customer)
    response = await shop.client.patch(
        f"/v1/products/{item['id']}", json={"active": False}, headers=vendor.headers
    )
    assert response.status_code == 200
    cart = await cart_of(shop, customer)
    assert cart["lines"][0]["available"] is False
    assert cart["checkout_ready"] is False


async def test_cart_flags_stock_below_the_line_quantity(shop: Shop) -> None:
    customer = await shop.customer()
    vendor, item, cart = await variant_in_cart(shop, customer, 3, stock=5)
    assert cart["lines"][0]["in_stock"] is True
    await patch_variant(shop, vendor, item, stock=2)
    cart = await cart_of(shop, customer)
    assert cart["lines"][0]["in_stock"] is False
    assert cart["lines"][0]["available"] is True
    assert cart["checkout_ready"] is False


async def test_client_sent_prices_are_refused(shop: Shop) -> None:
    customer = await shop.customer()
    _, item, cart = await variant_in_cart(shop, customer)
    variant_id, line_id = item["variants"][0]["id"], cart["lines"][0]["id"]
    for field in ("unit_price_amount", "price"):
        added = await shop.client.post(
            "/v1/cart/lines",
            json={"variant_id": variant_id, "quantity": 1, field: 1},
            headers=customer.headers,
        )
        assert_problem(added, 422)
        changed = await shop.client.patch(
            f"/v1/cart/lines/{line_id}", json={"quantity": 1, field: 1}, headers=customer.headers
        )
        assert_problem(changed, 422)
    line = (await cart_of(shop, customer))["lines"][0]
    assert line["quantity"] == 1
    assert line["unit_price_amount"] == item["variants"][0]["price_amount"]


async def test_another_customers_cart_line_is_not_found(shop: Shop) -> None:
    owner = await shop.customer()
    intruder = await shop.customer()
    _, _, cart = await variant_in_cart(shop, owner, 2)
    line_id = cart["lines"][0]["id"]
    changed = await shop.client.patch(
        f"/v1/cart/lines/{line_id}", json={"quantity": 9}, headers=intruder.headers
    )
    assert_problem(changed, 404)
    removed = await shop.client.delete(f"/v1/cart/lines/{line_id}", headers=intruder.headers)
    assert_problem(removed, 404)
    assert (await cart_of(shop, owner))["lines"][0]["quantity"] == 2
    assert (await cart_of(shop, intruder))["lines"] == []


async def test_vendors_can_shop_with_their_own_cart(shop: Shop) -> None:
    buyer = await shop.vendor()
    _, _, cart = await variant_in_cart(shop, buyer, 2, price=300)
    assert cart["subtotal_amount"] == 600
    assert (await cart_of(shop, buyer))["lines"][0]["quantity"] == 2


async def test_the_cart_needs_a_token(client: httpx.AsyncClient) -> None:
    for method, path, body in (
        ("GET", "/v1/cart", None),
        ("DELETE", "/v1/cart", None),
        ("POST", "/v1/cart/lines", {"variant_id": "var_x", "quantity": 1}),
        ("PATCH", "/v1/cart/lines/cln_x", {"quantity": 1}),
        ("DELETE", "/v1/cart/lines/cln_x", None),
    ):
        assert_problem(await client.request(method, path, json=body), 401)


async def test_a_cart_whose_total_checkout_would_refuse_is_not_ready(shop: Shop) -> None:
    """Two lines each within bounds whose sum exceeds 2^53-1: the cart said ready, then
    checkout answered 409 total_too_large. Both now apply the same money rule."""
    customer = await shop.customer()
    vendor, _, _ = await variant_in_cart(shop, customer, price=MAX_AMOUNT)
    other = await shop.product(vendor, price=MAX_AMOUNT)
    assert (await shop.add_to_cart(customer, other["variants"][0]["id"])).status_code == 200

    cart = await cart_of(shop, customer)

    assert cart["checkout_ready"] is False
    assert cart["not_ready_reasons"] == ["total_too_large"]
    assert cart["subtotal_amount"] is None
    assert [line["line_total_amount"] for line in cart["lines"]] == [MAX_AMOUNT, MAX_AMOUNT]
    assert assert_problem(await shop.checkout(customer), 409)["code"] == "total_too_large"


async def test_a_line_whose_total_exceeds_the_largest_amount_has_no_total(shop: Shop) -> None:
    customer = await shop.customer()
    _, _, cart = await variant_in_cart(shop, customer, 2, price=MAX_AMOUNT)
    assert cart["lines"][0]["line_total_amount"] is None
    assert cart["subtotal_amount"] is None
    assert cart["checkout_ready"] is False
    assert cart["not_ready_reasons"] == ["total_too_large"]


async def test_a_ready_cart_gives_no_reasons_and_an_empty_one_says_so(shop: Shop) -> None:
    customer = await shop.customer()
    assert (await cart_of(shop, customer))["not_ready_reasons"] == ["empty"]
    _, _, cart = await variant_in_cart(shop, customer, 2, price=MAX_AMOUNT // 2)
    assert cart["subtotal_amount"] == MAX_AMOUNT - 1
    assert cart["checkout_ready"] is True
    assert cart["not_ready_reasons"] == []
