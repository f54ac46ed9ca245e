"""Console pages and actions over HTTP: CSRF, CSP, the payments list and page, refunds."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import httpx
from sqlalchemy import func, select, update

from tests.accounts.helpers import Account, Accounts
from tests.console.helpers import (
    browser,
    csrf_of,
    forget_used_codes,
    hidden_fields,
    post_form,
    sign_in,
)
from tests.payments.helpers import Checkout
from tillpay.accounts.models import AuthSession, Role
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.models import Refund


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.nonces: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.nonces.append(dict(attrs).get("nonce"))


async def _admin(accounts: Accounts, web: httpx.AsyncClient) -> Account:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    assert (await sign_in(web, admin)).status_code == 303
    return admin


async def test_every_script_carries_the_pages_csp_nonce(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        page = await web.get("/console")
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    parser = _Scripts()
    parser.feed(page.text)
    assert parser.nonces
    assert all(n == nonce.group(1) for n in parser.nonces)
    assert "style=" not in page.text  # inline styles would be refused by the CSP


async def test_assets_are_served_with_immutable_caching(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        page = await web.get("/console/login")
        css = re.search(r'href="(/web/assets/tillpay\.[0-9a-f]+\.css)"', page.text)
        assert css is not None
        asset = await web.get(css.group(1))
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert (await web.get("/web/assets/nope.css")).status_code == 404


async def test_post_without_a_token_is_refused(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        response = await post_form(web, "/console/logout", {})
        assert response.status_code == 403
        assert "could not be verified" in response.text
        assert (await web.get("/console")).status_code == 200  # still signed in


async def test_another_sessions_token_is_refused(accounts: Accounts) -> None:
    async with browser(accounts.client) as one, browser(accounts.client) as two:
        await _admin(accounts, one)
        vendor = await accounts.user(role=Role.VENDOR)
        assert (await sign_in(two, vendor)).status_code == 303
        theirs = csrf_of((await two.get("/console")).text)
        response = await post_form(one, "/console/logout", {"csrf_token": theirs})
        assert response.status_code == 403


async def test_cross_site_posts_are_refused_even_with_a_token(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        token = csrf_of((await web.get("/console")).text)
        cross = await post_form(
            web, "/console/logout", {"csrf_token": token}, **{"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
        foreign = await post_form(
            web, "/console/logout", {"csrf_token": token}, Origin="https://evil.example"
        )
        assert foreign.status_code == 403
        assert (await post_form(web, "/console/logout", {"csrf_token": token})).status_code == 303


async def test_the_login_form_needs_its_cookie_token(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        response = await post_form(
            web, "/console/login", {"email": vendor.email, "password": vendor.password}
        )
        assert response.status_code == 403


async def test_refund_needs_step_up_and_happens_once(
    accounts: Accounts, checkout: Checkout
) -> None:
    customer = await accounts.user()
    _, payment = await checkout.paid_order(customer, price=5000)
    assert payment["status"] == "succeeded"
    async with browser(accounts.client) as web:
        admin = await _admin(accounts, web)
        async with accounts.database.session() as session, session.begin():
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == admin.user_id)
                .values(auth_time=utcnow() - timedelta(hours=1))
            )
        path = f"/console/payments/{payment['id']}/refund"
        gate = await web.get(path)
        assert gate.status_code == 303
        assert gate.headers["location"] == f"/console/reauth?next={path}"
        reauth = await web.get(gate.headers["location"])
        await forget_used_codes(accounts.database, admin)
        fields = hidden_fields(reauth.text)
        wrong = await post_form(
            web, "/console/reauth", {**fields, "password": "nope", "code": admin.next_code()}
        )
        assert wrong.status_code == 401
        assert (await web.get(path)).status_code == 303  # still not stepped up
        await forget_used_codes(accounts.database, admin)
        done = await post_form(
            web,
            "/console/reauth",
            {**fields, "password": admin.password, "code": admin.next_code()},
        )
        assert done.status_code == 303
        assert done.headers["location"] == path
        form = await web.get(path)
        assert form.status_code == 200
        data = {**hidden_fields(form.text), "amount": "12.50", "reason": "requested_by_customer"}
        first = await post_form(web, path, data)
        second = await post_form(web, path, data)  # a double submit of the same form
        assert first.status_code == 303
        assert second.status_code == 303
        detail = await web.get(f"/console/payments/{payment['id']}")
        assert "refund" in detail.text
    async with accounts.database.session() as session:
        refunds = (
            (await session.execute(select(Refund).where(Refund.payment_id == payment["id"])))
            .scalars()
            .all()
        )
        assert [r.amount for r in refunds] == [1250]
        audit = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "refund.created", AuditEvent.target_id == refunds[0].id
            )
        )
        assert audit == 1
        ledger = await session.scalar(
            select(func.count()).where(LedgerTransaction.reference_id == refunds[0].id)
        )
        assert ledger == 1
    assert "ledger" in detail.text.lower()
    assert refunds[0].id in detail.text


async def test_filters_return_the_right_payments(accounts: Accounts, checkout: Checkout) -> None:
    one, two = await accounts.user(), await accounts.user()
    _, paid = await checkout.paid_order(one, price=1000)
    _, other = await checkout.paid_order(two, price=3000)
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        by_email = await web.get("/console/payments", params={"email": one.email})
        assert paid["id"] in by_email.text
        assert other["id"] not in by_email.text
        by_amount = await web.get(
            "/console/payments", params={"amount_min": "20", "currency": "USD"}
        )
        assert other["id"] in by_amount.text
        assert paid["id"] not in by_amount.text
        by_id = await web.get("/console/payments", params={"q": other["id"]})
        assert other["id"] in by_id.text
        assert paid["id"] not in by_id.text
        bad = await web.get("/console/payments", params={"status": "bogus"})
        assert bad.status_code == 400
        bad_date = await web.get("/console/payments", params={"date_from": "yesterday"})
        assert bad_date.status_code == 400


async def test_a_vendor_cannot_open_another_vendors_payment(
    accounts: Accounts, checkout: Checkout, shop: object
) -> None:
    customer = await accounts.user()
    theirs, mine = await checkout.shop.vendor(), await checkout.shop.vendor()
    order = await checkout.shop.order(customer, theirs)
    payment = (await checkout.pay(customer, order["id"])).json()
    own_order = await checkout.shop.order(customer, mine)
    own = (await checkout.pay(customer, own_order["id"])).json()
    async with browser(accounts.client) as web:
        assert (await sign_in(web, mine)).status_code == 303
        assert (await web.get(f"/console/payments/{payment['id']}")).status_code == 404
        assert (await web.get(f"/console/payments/{own['id']}")).status_code == 200
        listing = await web.get("/console/payments")
        assert own["id"] in listing.text
        assert payment["id"] not in listing.text
