"""The realtime WebSocket ``/v1/ws`` over a real socket: authentication, origin, who
hears what, session checks, back-pressure (docs/realtime.md)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.realtime.conftest import Live, events, heard, next_message, nothing_pending
from tillpay.accounts.models import Role


async def _read_until_closed(ws) -> None:
    while True:
        await ws.recv()


async def _closed_with(ws, within: float = 10.0) -> int:
    """The close code the server ends ``ws`` with (whatever it sent before)."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(_read_until_closed(ws), within)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_socket_that_does_not_authenticate_in_time_is_closed(make_live) -> None:
    async with make_live(realtime_auth_timeout_seconds=0.3) as live, live.socket() as ws:
        assert await _closed_with(ws) == 4008


async def test_a_bad_token_closes_the_socket_before_ready(live: Live) -> None:
    async with live.socket() as ws:
        await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
        assert await _closed_with(ws) == 4001


async def test_a_first_message_other_than_auth_closes_the_socket(live: Live) -> None:
    async with live.socket() as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await _closed_with(ws) == 1008


async def test_a_token_in_the_query_string_is_refused_at_the_handshake(live: Live) -> None:
    customer = await live.shop.customer()
    with pytest.raises(InvalidStatus) as refused:
        async with live.socket(path=f"?token={customer.access_token}"):
            pass
    assert refused.value.response.status_code == 403


async def test_a_foreign_origin_is_refused_at_the_handshake(make_live) -> None:
    async with make_live(cors_allow_origins=["https://shop.example"]) as live:
        with pytest.raises(InvalidStatus) as refused:
            async with live.socket(origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403


async def test_an_allowed_origin_may_connect(make_live) -> None:
    async with make_live(cors_allow_origins=["https://shop.example"]) as live:
        customer = await live.shop.customer()
        async with live.socket(customer, origin="https://shop.example") as ws:
            await nothing_pending(ws)


async def test_a_customer_hears_their_own_payment_and_another_customer_hears_nothing(
    live: Live,
) -> None:
    buyer = await live.shop.customer()
    other = await live.shop.customer()
    await live.push()  # the sign-up events, before anyone listens
    async with live.socket(buyer) as mine, live.socket(other) as theirs:
        order, payment = await live.checkout.paid_order(buyer)
        await live.push()

        by_type = {e["type"]: e for e in await events(mine, 2)}
        assert set(by_type) == {"order.paid", "payment.succeeded"}
        assert by_type["payment.succeeded"]["data"]["object"]["id"] == payment["id"]
        assert by_type["payment.succeeded"]["data"]["object"]["status"] == "succeeded"
        assert by_type["order.paid"]["data"]["object"]["id"] == order["id"]
        # Customers get the object as their own GET shows it, not the admin's details.
        assert "details" not in by_type["order.paid"]["data"]
        await nothing_pending(theirs)


async def test_a_vendor_hears_of_orders_with_their_lines_and_sees_only_those_lines(
    live: Live,
) -> None:
    vendor, rival = await live.shop.vendor(), await live.shop.vendor()
    buyer = await live.shop.customer()
    mine = await live.shop.product(vendor, price=1000)
    theirs = await live.shop.product(rival, price=2000)
    for item in (mine, theirs):
        added = await live.shop.add_to_cart(buyer, item["variants"][0]["id"])
        assert added.status_code == 200, added.text
    order = (await live.shop.checkout(buyer)).json()
    bystander_account = await live.shop.vendor()
    await live.push()  # the sign-up events, before anyone listens
    async with live.socket(vendor) as ws, live.socket(bystander_account) as bystander:
        payment = (await live.checkout.pay(buyer, order["id"])).json()
        await live.checkout.submit_card(payment, "4242 4242 4242 4242")
        await live.checkout.deliver_webhooks()
        await live.checkout.process_webhooks()
        await live.push()

        [paid] = await events(ws, 1)
        assert paid["type"] == "order.paid"
        shown = paid["data"]["object"]
        assert shown["id"] == order["id"]
        assert [line["vendor_id"] for line in shown["lines"]] == [vendor.user_id]
        assert "customer_id" not in shown
        await nothing_pending(ws)  # no payment events: those are the customer's
        await nothing_pending(bystander)


async def test_a_customer_may_not_subscribe_to_the_admin_channel(live: Live) -> None:
    customer = await live.shop.customer()
    async with live.socket(customer) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "admin"}))
        assert await next_message(ws) == {"type": "error", "code": "forbidden"}


async def test_an_admin_without_2fa_may_not_subscribe_to_the_admin_channel(live: Live) -> None:
    without_2fa = await live.accounts.user(role=Role.ADMIN)
    async with live.socket(without_2fa) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "admin"}))
        assert await next_message(ws) == {"type": "error", "code": "admin_2fa_required"}


async def test_an_admin_on_the_admin_channel_hears_every_event_with_its_details(
    live: Live,
) -> None:
    admin = await live.accounts.admin()
    buyer = await live.shop.customer()
    async with live.socket(admin) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "admin"}))
        assert await next_message(ws) == {"type": "subscribed", "channel": "admin"}
        order, _ = await live.checkout.paid_order(buyer)
        await live.push()
        paid = (await heard(ws, "order.paid", "payment.succeeded"))["order.paid"]
        assert paid["data"]["object"]["id"] == order["id"]
        assert paid["data"]["details"]["to"] == "paid"


async def test_revoking_the_session_closes_its_socket(live: Live) -> None:
    customer = await live.shop.customer()
    async with live.socket(customer) as ws:
        out = await live.client.post("/v1/auth/logout", headers=customer.headers)
        assert out.status_code == 204
        assert await _closed_with(ws, within=5) == 4001


async def test_a_fresh_token_of_another_user_closes_the_socket(live: Live) -> None:
    customer, other = await live.shop.customer(), await live.shop.customer()
    async with live.socket(customer) as ws:
        await ws.send(json.dumps({"type": "auth", "token": other.access_token}))
        assert await _closed_with(ws) == 4001


async def test_a_fresh_token_of_the_same_user_keeps_the_socket(live: Live) -> None:
    customer = await live.shop.customer()
    async with live.socket(customer) as ws:
        again = await live.accounts.login(customer)
        token = again.json()["access_token"]
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert (await next_message(ws))["type"] == "authenticated"
        await nothing_pending(ws)


async def test_a_user_may_hold_only_so_many_sockets(make_live) -> None:
    async with make_live(realtime_max_connections_per_user=2) as live:
        customer = await live.shop.customer()
        async with live.socket(customer), live.socket(customer), live.socket() as third:
            await third.send(json.dumps({"type": "auth", "token": customer.access_token}))
            assert await _closed_with(third) == 4029
            metrics = (await live.client.get("/metrics")).text
    assert "tillpay_realtime_connections 2.0" in metrics
    assert "tillpay_realtime_refused_over_cap_total 1.0" in metrics


async def test_a_client_too_far_behind_is_dropped(make_live) -> None:
    async with make_live(realtime_queue_size=2) as live:
        customer = await live.shop.customer()
        async with live.socket(customer) as ws:
            await nothing_pending(ws)
            # Routed in one go, faster than any socket drains: the queue overflows.
            live.app.state.realtime.route([(f"user:{customer.user_id}", '{"type":"x"}')] * 50)
            assert await _closed_with(ws) == 1013
            assert live.app.state.realtime.count(customer.user_id) == 0
            metrics = (await live.client.get("/metrics")).text
    assert "tillpay_realtime_dropped_slow_total 1.0" in metrics
    assert "tillpay_realtime_connections 0.0" in metrics


async def test_a_quiet_socket_gets_heartbeats(make_live) -> None:
    async with make_live(realtime_heartbeat_seconds=0.2) as live:
        customer = await live.shop.customer()
        async with live.socket(customer) as ws:
            beat = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert beat == {"type": "heartbeat"}


async def test_an_unknown_message_is_answered_with_an_error(live: Live) -> None:
    customer = await live.shop.customer()
    async with live.socket(customer) as ws:
        await ws.send(json.dumps({"type": "gimme"}))
        assert await next_message(ws) == {"type": "error", "code": "unknown_message"}


async def _until_pong(ws) -> list[dict]:
    """Every event queued before a ping's answer."""
    await ws.send(json.dumps({"type": "ping"}))
    out = []
    while (message := await next_message(ws))["type"] != "pong":
        out.append(message["event"])
    return out


async def test_a_user_hears_events_about_their_own_account_and_no_one_elses(
    live: Live,
) -> None:
    customer, other = await live.shop.customer(), await live.shop.customer()
    async with live.socket(customer) as ws, live.socket(other) as theirs:
        await live.push()
        for socket, account in ((ws, customer), (theirs, other)):
            got = await events(socket, 1)  # the first, then all queued behind it
            got += await _until_pong(socket)
            assert "user.registered" in {e["type"] for e in got}
            assert {e["data"]["object"]["id"] for e in got} == {account.user_id}
