"""Catalog: vendors create and change products; the public lists and searches them."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.accounts.helpers import Account
from tests.commerce.helpers import Shop
from tests.http.test_errors import assert_problem


def simple(**overrides: Any) -> dict[str, Any]:
    """A valid body for a one-variant product."""
    body: dict[str, Any] = {
        "title": "Ankara tote bag",
        "currency": "USD",
        "sku": f"SKU-{secrets.token_hex(4)}",
        "price_amount": 1500,
        "stock": 5,
    }
    body.update(overrides)
    return body


async def create(shop: Shop, vendor: Account, body: dict[str, Any]) -> httpx.Response:
    return await shop.client.post("/v1/products", json=body, headers=vendor.headers)


async def own_products(shop: Shop, vendor: Account) -> list[dict[str, Any]]:
    response = await shop.client.get("/v1/vendor/products?limit=100", headers=vendor.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def listed_ids(client: httpx.AsyncClient, query: str = "") -> list[str]:
    response = await client.get(f"/v1/products?limit=100&{query}")
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["items"]]


# --- creating and changing ------------------------------------------------------------


async def test_vendor_creates_a_simple_product_with_one_variant(shop: Shop) -> None:
    vendor = await shop.vendor()
    response = await create(shop, vendor, simple(sku="TOTE-01", price_amount=1250, stock=7))
    assert response.status_code == 201
    product = response.json()
    assert product["vendor_id"] == vendor.user_id
    assert product["active"] is True
    [variant] = product["variants"]
    assert (variant["sku"], variant["price_amount"], variant["stock"]) == ("TOTE-01", 1250, 7)
    detail = await shop.client.get(f"/v1/products/{product['id']}")
    assert detail.json() == product


async def test_vendor_creates_a_product_with_variants(shop: Shop) -> None:
    vendor = await shop.vendor()
    variants = [
        {"sku": "SHIRT-S", "price_amount": 2000, "stock": 3, "attributes": {"size": "S"}},
        {"sku": "SHIRT-L", "price_amount": 2200, "stock": 0, "attributes": {"size": "L"}},
    ]
    body = {"title": "Shirt", "currency": "NGN", "variants": variants}
    response = await create(shop, vendor, body)
    assert response.status_code == 201
    got = {
        v["sku"]: (v["price_amount"], v["stock"], v["attributes"])
        for v in response.json()["variants"]
    }
    assert got == {"SHIRT-S": (2000, 3, {"size": "S"}), "SHIRT-L": (2200, 0, {"size": "L"})}


async def test_vendor_adds_a_variant(shop: Shop) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor, sku="CUP-RED")
    response = await shop.client.post(
        f"/v1/products/{product['id']}/variants",
        json={"sku": "CUP-BLUE", "price_amount": 900, "stock": 4},
        headers=vendor.headers,
    )
    assert response.status_code == 201
    assert sorted(v["sku"] for v in response.json()["variants"]) == ["CUP-BLUE", "CUP-RED"]


async def test_vendor_updates_product_fields(shop: Shop) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor)
    changes = {
        "title": "Renamed",
        "description": "Now with pockets.",
        "image_urls": ["https://cdn.shop.example/a.jpg"],
        "attributes": {"colour": "green"},
    }
    response = await shop.client.patch(
        f"/v1/products/{product['id']}", json=changes, headers=vendor.headers
    )
    assert response.status_code == 200
    detail = (await shop.client.get(f"/v1/products/{product['id']}")).json()
    assert {k: detail[k] for k in changes} == changes


async def test_vendor_updates_variant_price_stock_and_status(shop: Shop) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor, price=1000, stock=1)
    variant_id = product["variants"][0]["id"]
    response = await shop.client.patch(
        f"/v1/products/{product['id']}/variants/{variant_id}",
        json={"price_amount": 1999, "stock": 40, "active": False},
        headers=vendor.headers,
    )
    assert response.status_code == 200
    [variant] = response.json()["variants"]
    assert (variant["price_amount"], variant["stock"], variant["active"]) == (1999, 40, False)


async def test_deactivated_product_is_hidden_from_the_public_but_not_its_vendor(
    shop: Shop,
) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor)
    response = await shop.client.patch(
        f"/v1/products/{product['id']}", json={"active": False}, headers=vendor.headers
    )
    assert response.status_code == 200
    assert product["id"] not in await listed_ids(shop.client)
    assert_problem(await shop.client.get(f"/v1/products/{product['id']}"), 404)
    own = await own_products(shop, vendor)
    assert [(p["id"], p["active"]) for p in own] == [(product["id"], False)]


# --- validation -----------------------------------------------------------------------


async def test_prices_that_are_not_integer_minor_units_are_refused(shop: Shop) -> None:
    vendor = await shop.vendor()
    for price in (10.0, "100", True, -1, 2**53, {"$gt": 0}, [100], None):
        response = await create(shop, vendor, simple(price_amount=price))
        assert response.status_code == 422, price
    assert await own_products(shop, vendor) == []


async def test_non_finite_json_numbers_are_refused_without_a_server_error(shop: Shop) -> None:
    vendor = await shop.vendor()
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"title": "x", "currency": "USD", "sku": "NAN-1", "price_amount": %s}' % token
        response = await shop.client.post(
            "/v1/products",
            content=raw,
            headers={**vendor.headers, "Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), token
        assert_problem(response, response.status_code)
    assert await own_products(shop, vendor) == []


async def test_vendor_id_in_the_body_is_refused(shop: Shop) -> None:
    vendor = await shop.vendor()
    other = await shop.vendor()
    body = assert_problem(await create(shop, vendor, simple(vendor_id=other.user_id)), 422)
    assert body["code"] == "validation_error"
    assert await own_products(shop, vendor) == []
    assert await own_products(shop, other) == []


async def test_malformed_product_bodies_are_refused_and_write_nothing(shop: Shop) -> None:
    vendor = await shop.vendor()
    variants = [{"sku": "V-1", "price_amount": 100}]
    bad = {
        "lowercase currency": simple(currency="usd"),
        "unknown currency": simple(currency="XYZ"),
        "sku and variants": simple(variants=variants),
        "neither sku nor variants": {"title": "x", "currency": "USD"},
        "sku with spaces": simple(sku="TOTE 01"),
        "title too long": simple(title="x" * 201),
        "eleven images": simple(
            image_urls=[f"https://cdn.shop.example/{i}.jpg" for i in range(11)]
        ),
        "negative stock": simple(stock=-1),
    }
    for case, body in bad.items():
        response = await create(shop, vendor, body)
        assert response.status_code == 422, case
    assert await own_products(shop, vendor) == []


async def test_image_urls_must_be_plain_https(shop: Shop) -> None:
    vendor = await shop.vendor()
    for url in (
        "http://cdn.shop.example/x.png",
        "javascript:alert(1)",
        "https://user:pass@cdn.shop.example/x.png",
        "file:///etc/passwd",
    ):
        response = await create(shop, vendor, simple(image_urls=[url]))
        assert response.status_code == 422, url
        patch = await shop.client.patch(
            "/v1/products/prd_missing", json={"image_urls": [url]}, headers=vendor.headers
        )
        assert patch.status_code == 422, url
    assert await own_products(shop, vendor) == []


async def test_description_markup_and_script_content_are_removed(shop: Shop) -> None:
    vendor = await shop.vendor()
    hostile = '<script>alert(1)</script>Nice <b>bag</b><img src=x onerror="alert(2)">'
    product = await shop.product(vendor, description=hostile)
    detail = (await shop.client.get(f"/v1/products/{product['id']}")).json()
    assert detail["description"] == product["description"] == "Nice bag"


async def test_description_plain_text_is_kept_with_entities_escaped(shop: Shop) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor)
    response = await shop.client.patch(
        f"/v1/products/{product['id']}",
        json={"description": "Fish & chips < 5 > 3"},
        headers=vendor.headers,
    )
    assert response.json()["description"] == "Fish &amp; chips &lt; 5 &gt; 3"


# --- SKU uniqueness -------------------------------------------------------------------


async def test_same_sku_twice_for_one_vendor_is_a_conflict_that_writes_nothing(
    shop: Shop,
) -> None:
    vendor = await shop.vendor()
    first = await shop.product(vendor, sku="DUP-1")
    body = assert_problem(await create(shop, vendor, simple(sku="DUP-1")), 409)
    assert body["code"] == "sku_taken"
    added = await shop.client.post(
        f"/v1/products/{first['id']}/variants",
        json={"sku": "DUP-1", "price_amount": 1},
        headers=vendor.headers,
    )
    assert assert_problem(added, 409)["code"] == "sku_taken"
    [only] = await own_products(shop, vendor)
    assert len(only["variants"]) == 1


async def test_two_vendors_may_use_the_same_sku(shop: Shop) -> None:
    first, second = await shop.vendor(), await shop.vendor()
    assert (await create(shop, first, simple(sku="SAME-1"))).status_code == 201
    assert (await create(shop, second, simple(sku="SAME-1"))).status_code == 201


# --- listing and search ---------------------------------------------------------------


async def test_cursor_pagination_walks_every_product_once_in_stable_order(shop: Shop) -> None:
    vendor = await shop.vendor()
    created = {(await shop.product(vendor))["id"] for _ in range(5)}

    async def walk() -> list[str]:
        seen: list[str] = []
        cursor = ""
        for _ in range(10):
            page = (await shop.client.get(f"/v1/products?limit=2{cursor}")).json()
            assert len(page["items"]) <= 2
            seen += [p["id"] for p in page["items"]]
            if page["next_cursor"] is None:
                return seen
            cursor = f"&cursor={page['next_cursor']}"
        raise AssertionError("pagination did not end")

    first = await walk()
    assert len(first) == len(set(first)) == 5
    assert set(first) == created
    assert first == sorted(first)
    assert await walk() == first


async def test_limit_out_of_range_is_refused(client: httpx.AsyncClient) -> None:
    for limit in ("0", "101", "-1", "abc"):
        assert_problem(await client.get(f"/v1/products?limit={limit}"), 422)


async def test_garbage_cursor_is_a_400(client: httpx.AsyncClient) -> None:
    for cursor in ("!!!", "bm90LWEtY3Vyc29y", "djE6Jzsgc2VsZWN0", "%00", "x" * 150):
        body = assert_problem(await client.get("/v1/products", params={"cursor": cursor}), 400)
        assert body["code"] == "invalid_cursor"


async def test_listing_filters_by_vendor_and_currency(shop: Shop) -> None:
    first, second = await shop.vendor(), await shop.vendor()
    usd = await shop.product(first, currency="USD")
    ngn = await shop.product(first, currency="NGN")
    theirs = await shop.product(second, currency="USD")
    assert set(await listed_ids(shop.client, f"vendor_id={first.user_id}")) == {
        usd["id"],
        ngn["id"],
    }
    assert set(await listed_ids(shop.client, "currency=USD")) == {usd["id"], theirs["id"]}
    assert await listed_ids(shop.client, f"vendor_id={second.user_id}&currency=NGN") == []


async def test_price_filter_matches_any_active_variant_in_range(shop: Shop) -> None:
    vendor = await shop.vendor()
    variants = [{"sku": "W-CHEAP", "price_amount": 500}, {"sku": "W-DEAR", "price_amount": 5000}]
    wide = (
        await create(shop, vendor, {"title": "Wide", "currency": "USD", "variants": variants})
    ).json()
    mid = await shop.product(vendor, price=2000)
    assert await listed_ids(shop.client, "min_price=4000") == [wide["id"]]
    assert await listed_ids(shop.client, "max_price=1000") == [wide["id"]]
    assert await listed_ids(shop.client, "min_price=1500&max_price=2500") == [mid["id"]]
    dear = next(v["id"] for v in wide["variants"] if v["sku"] == "W-DEAR")
    await shop.client.patch(
        f"/v1/products/{wide['id']}/variants/{dear}",
        json={"active": False},
        headers=vendor.headers,
    )
    assert await listed_ids(shop.client, "min_price=4000") == []


async def test_text_search_is_case_insensitive_over_title_and_description(shop: Shop) -> None:
    vendor = await shop.vendor()
    tote = await shop.product(vendor, title="Ankara Tote Bag")
    pouch = await shop.product(vendor, title="Pouch", description="Fits in a TOTE.")
    await shop.product(vendor, title="Shirt")
    for q in ("tote", "TOTE", "ToTe"):
        assert set(await listed_ids(shop.client, f"q={q}")) == {tote["id"], pouch["id"]}, q


async def test_search_wildcards_and_sql_are_matched_literally(shop: Shop) -> None:
    vendor = await shop.vendor()
    cotton = await shop.product(vendor, title="100% cotton")
    await shop.product(vendor, title="Plain shirt")
    assert await listed_ids(shop.client, "q=%25") == [cotton["id"]]
    for q in ("_", "' OR 1=1 --", "\\", '" OR ""="', "%' --"):
        response = await shop.client.get("/v1/products", params={"q": q})
        assert response.status_code == 200, q
        assert response.json()["items"] == [], q


async def test_nul_bytes_in_listing_filters_are_refused(client: httpx.AsyncClient) -> None:
    for param in ("q", "vendor_id"):
        response = await client.get("/v1/products", params={param: "a\x00b"})
        body = assert_problem(response, 400)
        assert body["code"] == "invalid_characters"


async def test_repeated_query_parameters_give_a_deterministic_answer(shop: Shop) -> None:
    vendor = await shop.vendor()
    await shop.product(vendor, currency="USD")
    await shop.product(vendor, currency="NGN")
    one_each = {tuple(await listed_ids(shop.client, f"currency={c}")) for c in ("USD", "NGN")}
    first = await listed_ids(shop.client, "currency=USD&currency=NGN")
    assert first == await listed_ids(shop.client, "currency=USD&currency=NGN")
    assert tuple(first) in one_each


async def test_listing_shows_a_committed_price_change_at_once(shop: Shop) -> None:
    vendor = await shop.vendor()
    product = await shop.product(vendor, price=1000)
    variant_id = product["variants"][0]["id"]
    before = (await shop.client.get("/v1/products")).json()["items"]
    assert before[0]["variants"][0]["price_amount"] == 1000
    await shop.client.patch(
        f"/v1/products/{product['id']}/variants/{variant_id}",
        json={"price_amount": 1234},
        headers=vendor.headers,
    )
    after = (await shop.client.get("/v1/products")).json()["items"]
    assert after[0]["variants"][0]["price_amount"] == 1234
    detail = (await shop.client.get(f"/v1/products/{product['id']}")).json()
    assert detail["variants"][0]["price_amount"] == 1234
