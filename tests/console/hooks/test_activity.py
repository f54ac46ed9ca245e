"""``/console/activity``: the latest events without JavaScript, and the live feed's socket
ticket (a cookie-session page's way onto ``/v1/ws``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.realtime.conftest import Live, heard, make_live, next_message
from tillpay.accounts.models import AuthSession, Role
from tillpay.kit.money import Money

__all__ = ["make_live"]


@pytest.fixture
async def live(make_live: Any) -> AsyncIterator[Live]:
    async with make_live(realtime_recheck_seconds=0.5) as running:
        yield running


async def _console(live: Live, role: Role = Role.ADMIN, *, totp: bool = True) -> Any:
    return await live.accounts.user(role=role, totp=totp)


async def _ticket(web: httpx.AsyncClient) -> dict[str, Any]:
    token = csrf_of((await web.get("/console")).text)
    answer = await post_form(web, "/console/live/ticket", {"csrf_token": token})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


async def _closed_with(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await next_message(ws)
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


async def test_the_page_lists_the_latest_payments_without_javascript(live: Live) -> None:
    admin = await _console(live)
    customer = await live.shop.customer()
    _, payment = await live.checkout.paid_order(customer)
    async with browser(live.client) as web:
        await sign_in(web, admin)
        page = await web.get("/console/activity")
    assert page.status_code == 200
    assert "payment.succeeded" in page.text
    assert payment["id"] in page.text
    assert Money(payment["amount"], payment["currency"]).format() in page.text
    assert 'nonce="' in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]


async def test_a_ticket_opens_the_socket_once_and_the_admin_channel_carries_payments(
    live: Live,
) -> None:
    admin = await _console(live)
    async with browser(live.client) as web:
        await sign_in(web, admin)
        ticket = await _ticket(web)
    assert ticket["path"] == "/v1/ws"
    async with connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "ticket": ticket["ticket"]}))
        ready = await next_message(ws)
        assert ready["type"] == "ready"
        assert ready["user_id"] == admin.user_id
        await ws.send(json.dumps({"type": "subscribe", "channel": "admin"}))
        assert (await next_message(ws))["type"] == "subscribed"
        customer = await live.shop.customer()
        _, payment = await live.checkout.paid_order(customer)
        await live.push()
        seen = await heard(ws, "payment.succeeded")
        assert seen["payment.succeeded"]["data"]["object"]["id"] == payment["id"]
    # The same ticket again: refused (single use), whichever process sees it.
    async with connect(live.ws_url) as again:
        await again.send(json.dumps({"type": "auth", "ticket": ticket["ticket"]}))
        assert await _closed_with(again) == 4001


async def test_a_forged_ticket_is_refused(live: Live) -> None:
    admin = await _console(live)
    async with browser(live.client) as web:
        await sign_in(web, admin)
        ticket = (await _ticket(web))["ticket"]
    version, payload, mac = ticket.split(".")
    for forged in (f"{version}.{payload}.{mac[:-2]}AA", "wst1.e30.AAAA", "x" * 2000):
        async with connect(live.ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "ticket": forged}))
            assert await _closed_with(ws) == 4001


async def test_a_ticket_needs_the_csrf_token_and_a_console_session(live: Live) -> None:
    admin = await _console(live)
    async with browser(live.client) as web:
        assert (await post_form(web, "/console/live/ticket", {})).status_code in (303, 403)
        await sign_in(web, admin)
        refused = await post_form(web, "/console/live/ticket", {})
        assert refused.status_code == 403
        cross = await post_form(
            web,
            "/console/live/ticket",
            {"csrf_token": csrf_of((await web.get("/console")).text)},
            **{"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403


async def test_signing_out_ends_the_ticket_and_the_socket(live: Live) -> None:
    admin = await _console(live)
    async with browser(live.client) as web:
        await sign_in(web, admin)
        first, second = await _ticket(web), await _ticket(web)
        async with connect(live.ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "ticket": first["ticket"]}))
            assert (await next_message(ws))["type"] == "ready"
            async with live.accounts.database.session() as session, session.begin():
                await session.execute(
                    update(AuthSession)
                    .where(AuthSession.user_id == admin.user_id)
                    .values(revoked_at=AuthSession.created_at)
                )
            assert await _closed_with(ws) == 4001  # the periodic re-check
        async with connect(live.ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "ticket": second["ticket"]}))
            assert await _closed_with(ws) == 4001


async def test_a_vendor_ticket_opens_only_their_own_events(live: Live) -> None:
    vendor = await _console(live, Role.VENDOR, totp=False)
    async with browser(live.client) as web:
        await sign_in(web, vendor)
        assert (await web.get("/console/activity")).status_code == 403
        ticket = await _ticket(web)
    async with connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "ticket": ticket["ticket"]}))
        assert (await next_message(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "channel": "admin"}))
        assert (await next_message(ws)) == {"type": "error", "code": "forbidden"}
