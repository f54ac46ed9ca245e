"""Checkout and orders: server-side snapshots and totals, idempotency, the state machine,
who may see what, and expiry returning stock exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from tests.accounts.helpers import Account
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.audit.models import AuditEvent
from tillpay.audit.service import Actor
from tillpay.catalog import inventory
from tillpay.catalog.models import ReservationStatus, StockReservation, Variant
from tillpay.kit import idempotency
from tillpay.kit.db import Database, utcnow
from tillpay.kit.idempotency_models import IdempotencyRecord
from tillpay.orders import service
from tillpay.orders.models import Order, OrderStatus
from tillpay.payments.expiry import expire_unpaid_orders

# Each test signs in several accounts; the per-IP auth policy is not what is tested here.
RELAXED_AUTH = {"auth": "1000/minute"}


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ratelimit_policies=RELAXED_AUTH) as c:
        yield c


def database(shop: Shop) -> Database:
    return shop.accounts.database


async def stock_of(shop: Shop, variant_id: str) -> int:
    async with database(shop).session() as session:
        variant = await session.get(Variant, variant_id)
        assert variant is not None
        return variant.stock


async def order_count(shop: Shop) -> int:
    async with database(shop).session() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def mark_paid(shop: Shop, order_id: str) -> None:
    """Payments arrive in a later issue: move the order to paid through the service layer."""
    async with database(shop).session() as session, session.begin():
        order = await service.lock_order(session, order_id)
        assert order is not None
        await service.transition(
            session, order, OrderStatus.PAID, actor=Actor.system(), reason="test"
        )
        await inventory.commit_reservations(session, order_id)


async def expire_due_later(shop: Shop) -> int:
    async with database(shop).session() as session, session.begin():
        return await expire_unpaid_orders(session, now=utcnow() + timedelta(days=1))


async def filled_cart(shop: Shop, customer: Account, **product: Any) -> dict[str, Any]:
    item = await shop.product(await shop.vendor(), **product)
    added = await shop.add_to_cart(customer, item["variants"][0]["id"])
    assert added.status_code == 200, added.text
    return item


def variant_of(order: dict[str, Any]) -> str:
    return str(order["lines"][0]["variant_id"])


# ----------------------------------------------------------------------------- checkout


async def test_order_keeps_the_title_sku_and_price_of_checkout_time(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    item = await shop.product(vendor, price=1000, title="Original", sku="SNAP-1")
    await shop.add_to_cart(customer, item["variants"][0]["id"], 2)
    order = (await shop.checkout(customer)).json()
    await shop.client.patch(
        f"/v1/products/{item['id']}", json={"title": "Renamed"}, headers=vendor.headers
    )
    changed = await shop.client.patch(
        f"/v1/products/{item['id']}/variants/{item['variants'][0]['id']}",
        json={"price_amount": 5000},
        headers=vendor.headers,
    )
    assert changed.status_code == 200
    stored = (await shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)).json()
    line = stored["lines"][0]
    assert (line["title"], line["sku"], line["unit_price_amount"]) == ("Original", "SNAP-1", 1000)
    assert stored["total_amount"] == 2000


async def test_total_is_the_sum_of_unit_price_times_quantity(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    wanted = [(1999, 3), (5, 7), (250_000, 1)]
    for price, quantity in wanted:
        item = await shop.product(vendor, price=price, stock=10)
        await shop.add_to_cart(customer, item["variants"][0]["id"], quantity)
    response = await shop.checkout(customer)
    assert response.status_code == 201
    order = response.json()
    expected = sum(price * quantity for price, quantity in wanted)
    assert order["subtotal_amount"] == order["total_amount"] == expected
    got = sorted((line["unit_price_amount"], line["quantity"]) for line in order["lines"])
    assert got == sorted(wanted)
    assert all(
        line["line_total_amount"] == line["unit_price_amount"] * line["quantity"]
        for line in order["lines"]
    )


async def test_client_sent_amounts_currency_or_status_are_refused(shop: Shop) -> None:
    customer = await shop.customer()
    await filled_cart(shop, customer, price=1000)
    for body in ({"total": 1}, {"status": "paid"}, {"currency": "JPY"}, {"price": 1}):
        response = await shop.client.post(
            "/v1/checkout",
            json=body,
            headers={**customer.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert_problem(response, 422)
    assert await order_count(shop) == 0
    cart = (await shop.client.get("/v1/cart", headers=customer.headers)).json()
    assert len(cart["lines"]) == 1


async def test_an_empty_cart_cannot_be_checked_out(shop: Shop) -> None:
    customer = await shop.customer()
    body = assert_problem(await shop.checkout(customer), 409)
    assert body["code"] == "empty_cart"
    assert await order_count(shop) == 0


async def test_a_cart_with_a_deactivated_item_needs_attention(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    item = await shop.product(vendor, stock=4)
    await shop.add_to_cart(customer, item["variants"][0]["id"])
    await shop.client.patch(
        f"/v1/products/{item['id']}", json={"active": False}, headers=vendor.headers
    )
    body = assert_problem(await shop.checkout(customer), 409)
    assert body["code"] == "cart_needs_attention"
    assert await order_count(shop) == 0
    assert await stock_of(shop, item["variants"][0]["id"]) == 4


async def test_out_of_stock_checkout_reserves_nothing(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    # The plentiful item is created first, so its stock is taken before the short one fails.
    plenty = await shop.product(vendor, stock=10)
    short = await shop.product(vendor, stock=5)
    await shop.add_to_cart(customer, plenty["variants"][0]["id"], 2)
    await shop.add_to_cart(customer, short["variants"][0]["id"], 3)
    reduced = await shop.client.patch(
        f"/v1/products/{short['id']}/variants/{short['variants'][0]['id']}",
        json={"stock": 2},
        headers=vendor.headers,
    )
    assert reduced.status_code == 200
    body = assert_problem(await shop.checkout(customer), 409)
    assert body["code"] == "out_of_stock"
    assert await stock_of(shop, plenty["variants"][0]["id"]) == 10
    assert await stock_of(shop, short["variants"][0]["id"]) == 2
    assert await order_count(shop) == 0
    cart = (await shop.client.get("/v1/cart", headers=customer.headers)).json()
    assert sorted(line["quantity"] for line in cart["lines"]) == [2, 3]


# -------------------------------------------------------------------------- idempotency


async def test_a_key_already_used_for_a_different_request_is_refused(shop: Shop) -> None:
    # Checkout's own body is always empty, so the earlier, different request is stored
    # directly: the same key with another fingerprint must never run a new checkout.
    customer = await shop.customer()
    item = await filled_cart(shop, customer, stock=3)
    async with database(shop).session() as session, session.begin():
        claim = await idempotency.claim(
            session,
            scope=customer.user_id,
            key="reused-key",
            operation="POST /v1/checkout",
            payload={"note": "a different body"},
        )
        idempotency.complete(claim, status=201, body={"id": "ord_other"})
    body = assert_problem(await shop.checkout(customer, key="reused-key"), 422)
    assert body["code"] == "idempotency_error"
    assert await order_count(shop) == 0
    assert await stock_of(shop, item["variants"][0]["id"]) == 3


async def test_idempotency_keys_are_scoped_per_user(shop: Shop) -> None:
    first, second = await shop.customer(), await shop.customer()
    await filled_cart(shop, first)
    await filled_cart(shop, second)
    a = await shop.checkout(first, key="shared-key")
    b = await shop.checkout(second, key="shared-key")
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]
    assert await order_count(shop) == 2


async def test_checkout_without_an_idempotency_key_is_422(shop: Shop) -> None:
    customer = await shop.customer()
    await filled_cart(shop, customer)
    response = await shop.client.post("/v1/checkout", headers=customer.headers)
    assert_problem(response, 422)
    assert await order_count(shop) == 0


async def test_a_malformed_idempotency_key_is_400(shop: Shop) -> None:
    customer = await shop.customer()
    await filled_cart(shop, customer)
    for key in ("k" * 300, "clé-été".encode(), b"has space"):
        # httpx sends a bytes header value as it is, though its types say str.
        headers: Any = {**customer.headers, "Idempotency-Key": key}
        response = await shop.client.post("/v1/checkout", headers=headers)
        assert assert_problem(response, 400)["code"] == "invalid_idempotency_key"
    assert await order_count(shop) == 0


async def test_a_stored_key_is_kept_for_at_least_a_day(shop: Shop) -> None:
    customer = await shop.customer()
    await filled_cart(shop, customer)
    before = utcnow()
    assert (await shop.checkout(customer, key="kept")).status_code == 201
    async with database(shop).session() as session:
        record = await session.scalar(select(IdempotencyRecord))
    assert record is not None
    assert (record.scope, record.key) == (customer.user_id, "kept")
    assert record.expires_at >= before + timedelta(hours=24)


# ------------------------------------------------------------------------ state machine


async def test_cancelling_a_pending_order_is_recorded_with_its_actor(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer)
    response = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    events = await shop.client.get(f"/v1/orders/{order['id']}/events", headers=customer.headers)
    assert events.status_code == 200
    steps = [(e["from_status"], e["to_status"], e["actor_id"], e["reason"]) for e in events.json()]
    assert steps == [
        (None, "pending_payment", customer.user_id, "checkout"),
        ("pending_payment", "cancelled", customer.user_id, "cancelled"),
    ]


async def test_a_paid_order_cannot_be_cancelled(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer, stock=1)
    await mark_paid(shop, order["id"])
    response = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert assert_problem(response, 409)["code"] == "invalid_state_transition"
    stored = await shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    assert stored.json()["status"] == "paid"
    assert await stock_of(shop, variant_of(order)) == 0


async def test_an_admin_fulfils_a_paid_order(shop: Shop) -> None:
    customer = await shop.customer()
    admin = await shop.accounts.admin()
    order = await shop.order(customer)
    await mark_paid(shop, order["id"])
    response = await shop.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "fulfilled"


async def test_a_pending_order_cannot_be_fulfilled(shop: Shop) -> None:
    customer = await shop.customer()
    admin = await shop.accounts.admin()
    order = await shop.order(customer)
    response = await shop.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=admin.headers
    )
    assert assert_problem(response, 409)["code"] == "invalid_state_transition"


async def test_a_customer_cannot_fulfil_their_order(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer)
    await mark_paid(shop, order["id"])
    response = await shop.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=customer.headers
    )
    assert_problem(response, 403)
    stored = await shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    assert stored.json()["status"] == "paid"


# ---------------------------------------------------------------------------- visibility


async def test_another_customers_order_is_not_found(shop: Shop) -> None:
    owner, intruder = await shop.customer(), await shop.customer()
    order = await shop.order(owner)
    path = f"/v1/orders/{order['id']}"
    for method, suffix in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
        response = await shop.client.request(method, path + suffix, headers=intruder.headers)
        assert_problem(response, 404)
    stored = await shop.client.get(path, headers=owner.headers)
    assert stored.json()["status"] == "pending_payment"
    listed = await shop.client.get("/v1/orders", headers=intruder.headers)
    assert listed.json()["items"] == []


async def test_a_vendor_sees_only_their_own_lines_and_no_customer_data(shop: Shop) -> None:
    customer = await shop.customer()
    mine_vendor, other_vendor = await shop.vendor(), await shop.vendor()
    mine = await shop.product(mine_vendor, price=100)
    theirs = await shop.product(other_vendor, price=900)
    await shop.add_to_cart(customer, mine["variants"][0]["id"])
    await shop.add_to_cart(customer, theirs["variants"][0]["id"])
    order = (await shop.checkout(customer)).json()
    response = await shop.client.get("/v1/vendor/orders", headers=mine_vendor.headers)
    assert response.status_code == 200
    [seen] = response.json()["items"]
    assert seen["id"] == order["id"]
    assert [line["product_id"] for line in seen["lines"]] == [mine["id"]]
    assert not {"customer_id", "email", "customer"} & set(seen)
    assert customer.user_id not in response.text
    assert customer.email not in response.text


async def test_admin_lists_orders_by_status_a_page_at_a_time(shop: Shop) -> None:
    customer = await shop.customer()
    admin = await shop.accounts.admin()
    item = await shop.product(await shop.vendor(), stock=10)
    ids = []
    for _ in range(3):
        await shop.add_to_cart(customer, item["variants"][0]["id"])
        ids.append((await shop.checkout(customer)).json()["id"])
    await shop.client.post(f"/v1/orders/{ids[0]}/cancel", headers=customer.headers)

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"status": "pending_payment", "limit": 1}
        params |= {"cursor": cursor} if cursor else {}
        page = (
            await shop.client.get("/v1/admin/orders", params=params, headers=admin.headers)
        ).json()
        assert len(page["items"]) <= 1
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids[1:])
    cancelled = await shop.client.get(
        "/v1/admin/orders", params={"status": "cancelled"}, headers=admin.headers
    )
    assert [o["id"] for o in cancelled.json()["items"]] == [ids[0]]


# -------------------------------------------------------------------------------- expiry


async def test_expiry_returns_the_stock_exactly_once(shop: Shop) -> None:
    customer = await shop.customer()
    vendor = await shop.vendor()
    item = await shop.product(vendor, stock=5)
    variant_id = item["variants"][0]["id"]
    await shop.add_to_cart(customer, variant_id, 2)
    order = (await shop.checkout(customer)).json()
    assert await stock_of(shop, variant_id) == 3
    assert await expire_due_later(shop) == 1
    stored = await shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    assert stored.json()["status"] == "expired"
    assert await stock_of(shop, variant_id) == 5
    assert await expire_due_later(shop) == 0
    cancel = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert_problem(cancel, 409)
    assert await stock_of(shop, variant_id) == 5


async def test_an_order_not_yet_due_does_not_expire(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer, stock=2)
    async with database(shop).session() as session, session.begin():
        assert await expire_unpaid_orders(session, now=utcnow()) == 0
    assert await stock_of(shop, variant_of(order)) == 1


async def test_order_creation_and_transitions_are_audited(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer)
    await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    async with database(shop).session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.target_type == "order", AuditEvent.target_id == order["id"])
                .order_by(AuditEvent.occurred_at)
            )
        ).all()
    assert [row.action for row in rows] == ["order.created", "order.status_changed"]
    assert all(row.actor_id == customer.user_id for row in rows)
    assert rows[1].details == {"from": "pending_payment", "to": "cancelled", "reason": "cancelled"}


async def test_a_reservation_status_is_one_of_the_known_ones(shop: Shop) -> None:
    order = await shop.order(await shop.customer())
    async with database(shop).session() as session:
        held = (
            await session.execute(
                select(StockReservation.status).where(StockReservation.order_id == order["id"])
            )
        ).scalar_one()
        assert held is ReservationStatus.ACTIVE
    # The database refuses a status the enum does not know (CHECK constraint).
    async with database(shop).session() as session:
        with pytest.raises(IntegrityError):
            async with session.begin():
                await session.execute(
                    text("UPDATE stock_reservations SET status = 'lost' WHERE order_id = :o"),
                    {"o": order["id"]},
                )
    async with database(shop).session() as session, session.begin():
        await session.execute(
            update(StockReservation)
            .where(StockReservation.order_id == order["id"])
            .values(status=ReservationStatus.COMMITTED)
        )
