"""Catalog access: who may change which product; reads are public."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account, bearer
from tests.commerce.helpers import Shop
from tests.http.test_errors import assert_problem


def write_requests(product: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every catalog write route, aimed at ``product`` and its first variant."""
    pid, vid = product["id"], product["variants"][0]["id"]
    return [
        (
            "POST",
            "/v1/products",
            {"title": "x", "currency": "USD", "sku": "W-1", "price_amount": 1},
        ),
        ("PATCH", f"/v1/products/{pid}", {"title": "Hijacked"}),
        ("PATCH", f"/v1/products/{pid}", {"active": False}),
        ("POST", f"/v1/products/{pid}/variants", {"sku": "EVIL-1", "price_amount": 1}),
        ("PATCH", f"/v1/products/{pid}/variants/{vid}", {"price_amount": 1, "stock": 0}),
    ]


async def send(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


async def public_view(shop: Shop, product: dict[str, Any]) -> dict[str, Any]:
    response = await shop.client.get(f"/v1/products/{product['id']}")
    assert response.status_code == 200
    return response.json()


async def test_customer_cannot_create_or_change_products(shop: Shop) -> None:
    product = await shop.product(await shop.vendor())
    customer = await shop.customer()
    for method, path, body in write_requests(product):
        response = await send(shop.client, method, path, body, customer.headers)
        assert_problem(response, 403)
    assert await public_view(shop, product) == product


async def test_vendor_cannot_touch_another_vendors_product(shop: Shop) -> None:
    owner, intruder = await shop.vendor(), await shop.vendor()
    product = await shop.product(owner)
    for method, path, body in write_requests(product)[1:]:
        response = await send(shop.client, method, path, body, intruder.headers)
        assert_problem(response, 404)
    assert await public_view(shop, product) == product


async def test_variant_of_another_vendor_cannot_be_reached_through_own_product(
    shop: Shop,
) -> None:
    owner, intruder = await shop.vendor(), await shop.vendor()
    victim = await shop.product(owner, price=1000)
    mine = await shop.product(intruder)
    response = await shop.client.patch(
        f"/v1/products/{mine['id']}/variants/{victim['variants'][0]['id']}",
        json={"price_amount": 1},
        headers=intruder.headers,
    )
    assert_problem(response, 404)
    assert (await public_view(shop, victim))["variants"][0]["price_amount"] == 1000


async def test_admin_changes_any_product_and_creates_platform_products(shop: Shop) -> None:
    product = await shop.product(await shop.vendor(), price=1000)
    admin = await shop.accounts.admin()
    variant_id = product["variants"][0]["id"]
    renamed = await shop.client.patch(
        f"/v1/products/{product['id']}", json={"title": "Curated"}, headers=admin.headers
    )
    assert renamed.status_code == 200
    repriced = await shop.client.patch(
        f"/v1/products/{product['id']}/variants/{variant_id}",
        json={"price_amount": 800},
        headers=admin.headers,
    )
    assert repriced.status_code == 200
    view = await public_view(shop, product)
    assert (view["title"], view["variants"][0]["price_amount"]) == ("Curated", 800)
    assert view["vendor_id"] == product["vendor_id"]
    own = await shop.product(admin)
    assert own["vendor_id"] is None


async def test_write_routes_need_a_valid_token(shop: Shop) -> None:
    product = await shop.product(await shop.vendor())
    for headers in ({}, bearer("garbage"), bearer("a.b.c")):
        for method, path, body in write_requests(product):
            assert_problem(await send(shop.client, method, path, body, headers), 401)
        assert_problem(await shop.client.get("/v1/vendor/products", headers=headers), 401)
    assert await public_view(shop, product) == product


async def test_public_reads_work_without_a_token(shop: Shop) -> None:
    product = await shop.product(await shop.vendor())
    listing = await shop.client.get("/v1/products")
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["items"]] == [product["id"]]
    assert (await public_view(shop, product))["id"] == product["id"]


async def test_unknown_product_is_a_404_problem(shop: Shop) -> None:
    vendor = await shop.vendor()
    missing = "prd_01JD3XK5Q6R7S8T9V0W1X2Y3Z4"
    body = assert_problem(await shop.client.get(f"/v1/products/{missing}"), 404)
    assert body["code"] == "not_found"
    patched = await shop.client.patch(
        f"/v1/products/{missing}", json={"title": "x"}, headers=vendor.headers
    )
    assert_problem(patched, 404)


@pytest.mark.parametrize("product_id", ["..%2F..%2Fetc", "..%252F..%252Fetc", "x" * 500, "%00"])
async def test_malformed_product_ids_are_refused_without_a_server_error(
    shop: Shop, product_id: str
) -> None:
    vendor: Account = await shop.vendor()
    for method, path, body in (
        ("GET", f"/v1/products/{product_id}", None),
        ("PATCH", f"/v1/products/{product_id}", {"title": "x"}),
        ("PATCH", f"/v1/products/{product_id}/variants/{product_id}", {"stock": 1}),
    ):
        response = await send(shop.client, method, path, body, vendor.headers)
        # 404/422 for malformed ids; 400 `invalid_characters` for a NUL byte (perimeter).
        assert response.status_code in (400, 404, 422), (method, path)
        assert_problem(response, response.status_code)


async def test_put_and_delete_on_a_product_are_405(shop: Shop) -> None:
    product = await shop.product(await shop.vendor())
    for method in ("PUT", "DELETE"):
        response = await shop.client.request(method, f"/v1/products/{product['id']}")
        assert_problem(response, 405)
    assert (await public_view(shop, product))["active"] is True
