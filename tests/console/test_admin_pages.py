"""The console's admin areas (issue 14) over HTTP, on SQLite and PostgreSQL: who may open
each page, the vendor's slice, and actions that go through the API's own services."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.console.helpers import browser, csrf_of, forget_used_codes, post_form, sign_in
from tests.payments.helpers import Checkout
from tillpay.accounts.models import AuthSession, Role, User
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow

ADMIN_PAGES = ["/console/customers", "/console/api-keys", "/console/audit"]
ALL_PAGES = [*ADMIN_PAGES, "/console/orders", "/console/vendors", "/console/ledger"]


@pytest.fixture
def shop(accounts: Accounts) -> Shop:
    return Shop(accounts)


@pytest.fixture
def checkout(shop: Shop) -> Checkout:
    return Checkout(shop)


async def _console_admin(accounts: Accounts, web: httpx.AsyncClient) -> Account:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    done = await sign_in(web, admin)
    assert done.status_code == 303, done.text
    return admin


async def _age_session(accounts: Accounts, account: Account) -> None:
    """Make the account's console sessions' last authentication old (step-up expired)."""
    async with accounts.database.session() as session, session.begin():
        user_id = (
            await session.execute(select(User.id).where(User.email == account.email))
        ).scalar_one()
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(auth_time=utcnow() - timedelta(hours=2))
        )


async def test_every_page_renders_for_an_admin(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        await _console_admin(accounts, web)
        for path in ALL_PAGES:
            response = await web.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            assert "no-store" in response.headers["cache-control"]
            assert "nonce-" in response.headers["content-security-policy"]
            assert f'href="{path}" aria-current="page"' in response.text, path


async def test_a_vendor_is_refused_on_admin_pages(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        for path in ADMIN_PAGES:
            response = await web.get(path)
            assert response.status_code == 403, path
            assert "text/html" in response.headers["content-type"]
        home = await web.get("/console")
        assert 'href="/console/customers"' not in home.text
        assert 'href="/console/orders"' in home.text


async def test_a_customer_cannot_use_the_console(accounts: Accounts) -> None:
    customer = await accounts.user()
    async with browser(accounts.client) as web:
        await sign_in(web, customer)
        for path in ALL_PAGES:
            assert (await web.get(path)).status_code in (303, 403), path


async def test_an_admin_without_2fa_is_refused_where_the_api_refuses(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    api = await accounts.client.get("/v1/admin/users", headers=admin.headers)
    assert api.status_code == 403
    assert api.json()["code"] == "admin_2fa_required"
    async with browser(accounts.client) as web:
        assert (await sign_in(web, admin)).status_code == 303
        for path in ALL_PAGES:
            response = await web.get(path)
            assert response.status_code == 403, path
            assert "two-factor" in response.text.lower(), path


async def test_a_vendor_sees_only_their_own_lines_and_balance(
    accounts: Accounts, shop: Shop, checkout: Checkout
) -> None:
    mine, theirs = await shop.vendor(), await shop.vendor()
    customer = await shop.customer()
    own_order, _ = await checkout.paid_order(customer, vendor=mine, title="Mine mug", price=1200)
    other = await shop.order(customer, vendor=theirs, title="Their teapot")
    async with browser(accounts.client) as web:
        assert (await sign_in(web, mine)).status_code == 303
        listing = await web.get("/console/orders")
        assert listing.status_code == 200
        assert own_order["id"] in listing.text
        assert other["id"] not in listing.text
        detail = await web.get(f"/console/orders/{own_order['id']}")
        assert detail.status_code == 200
        assert "Mine mug" in detail.text
        assert customer.email not in detail.text  # no customer data for vendors
        assert (await web.get(f"/console/orders/{other['id']}")).status_code == 404
        balance = await web.get("/console/vendors")
        assert balance.status_code == 200
        assert "USD" in balance.text
        ledger = await web.get("/console/ledger")
        assert f"vendor_payable:{mine.user_id}:USD" in ledger.text
        assert theirs.user_id not in ledger.text


async def test_orders_filter_detail_and_cancel(accounts: Accounts, shop: Shop) -> None:
    customer, other = await shop.customer(), await shop.customer()
    order = await shop.order(customer, title="Blue kettle")
    foreign = await shop.order(other)
    async with browser(accounts.client) as web:
        await _console_admin(accounts, web)
        found = await web.get("/console/orders", params={"email": customer.email})
        assert order["id"] in found.text
        assert foreign["id"] not in found.text
        today = utcnow().date()
        past = await web.get("/console/orders", params={"date_to": str(today - timedelta(days=2))})
        assert order["id"] not in past.text
        now = await web.get("/console/orders", params={"date_from": str(today)})
        assert order["id"] in now.text
        assert (await web.get("/console/orders", params={"status": "bogus"})).status_code == 400
        assert (await web.get("/console/orders", params={"date_from": "x"})).status_code == 400
        assert (await web.get("/console/orders", params={"cursor": "!!"})).status_code == 400
        detail = await web.get(f"/console/orders/{order['id']}")
        assert "Blue kettle" in detail.text
        assert "Cancel order" in detail.text
        no_token = await post_form(web, f"/console/orders/{order['id']}/cancel", {})
        assert no_token.status_code == 403
        cancelled = await post_form(
            web, f"/console/orders/{order['id']}/cancel", {"csrf_token": csrf_of(detail.text)}
        )
        assert cancelled.status_code == 303
    api = await accounts.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    assert api.json()["status"] == "cancelled"


async def test_revoking_sessions_needs_step_up_and_ends_the_api_token_at_once(
    accounts: Accounts,
) -> None:
    customer = await accounts.user()
    assert (await accounts.client.get("/v1/me", headers=customer.headers)).status_code == 200
    async with browser(accounts.client) as web:
        admin = await _console_admin(accounts, web)
        detail = await web.get(f"/console/customers/{customer.user_id}")
        assert detail.status_code == 200
        assert "Sign out everywhere" in detail.text
        assert "not locked" in detail.text
        token = csrf_of(detail.text)
        path = f"/console/customers/{customer.user_id}/sessions/revoke"
        assert (await post_form(web, path, {})).status_code == 403  # CSRF missing
        await _age_session(accounts, admin)
        stale = await post_form(web, path, {"csrf_token": token})
        assert stale.status_code == 303
        assert stale.headers["location"].startswith("/console/reauth")
        assert (await accounts.client.get("/v1/me", headers=customer.headers)).status_code == 200
        await forget_used_codes(accounts.database, admin)
        reauth = await web.get(stale.headers["location"])
        stepped = await post_form(
            web,
            "/console/reauth",
            {
                "csrf_token": csrf_of(reauth.text),
                "password": admin.password,
                "code": admin.next_code(),
                "next": path,
            },
        )
        assert stepped.status_code == 303
        assert stepped.headers["location"] == path
        form = await web.get(path)
        assert form.status_code == 200
        done = await post_form(web, path, {"csrf_token": csrf_of(form.text)})
        assert done.status_code == 303
        assert (await accounts.client.get("/v1/me", headers=customer.headers)).status_code == 401
        audit = await web.get("/console/audit", params={"action": "admin.sessions_revoked"})
        assert audit.status_code == 200
        assert customer.user_id in audit.text
        by_email = await web.get("/console/audit", params={"actor": admin.email})
        assert "admin.sessions_revoked" in by_email.text
    async with accounts.database.session() as session:
        rows = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.action == "admin.sessions_revoked")
            )
        ).scalars()
        assert [(e.actor_id, e.target_id) for e in rows] == [(admin.user_id, customer.user_id)]


async def test_role_change_needs_step_up_and_takes_effect_at_once(accounts: Accounts) -> None:
    customer = await accounts.user()
    async with browser(accounts.client) as web:
        admin = await _console_admin(accounts, web)
        path = f"/console/customers/{customer.user_id}/role"
        form = await web.get(path)
        token = csrf_of(form.text)
        await _age_session(accounts, admin)
        stale = await post_form(web, path, {"csrf_token": token, "role": "VENDOR"})
        assert stale.status_code == 303
        assert "/console/reauth" in stale.headers["location"]
        async with accounts.database.session() as session:
            user = await session.get(User, customer.user_id)
            assert user is not None
            assert user.role is Role.CUSTOMER
        # Fresh step-up (as after /console/reauth): the change applies via the service.
        async with accounts.database.session() as session, session.begin():
            await session.execute(update(AuthSession).values(auth_time=utcnow()))
        bad = await post_form(web, path, {"csrf_token": token, "role": "ROOT"})
        assert bad.status_code == 400
        done = await post_form(web, path, {"csrf_token": token, "role": "VENDOR"})
        assert done.status_code == 303
    assert (await accounts.client.get("/v1/me", headers=customer.headers)).status_code == 401
    async with accounts.database.session() as session:
        user = await session.get(User, customer.user_id)
        assert user is not None
        assert user.role is Role.VENDOR
        event = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.action == "admin.user_updated")
            )
        ).scalar_one()
        assert event.details["role"] == {"from": "CUSTOMER", "to": "VENDOR"}


async def test_api_key_is_shown_once_and_revoking_it_bites_at_once(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        await _console_admin(accounts, web)
        form = await web.get("/console/api-keys/new")
        token = csrf_of(form.text)
        wrong = await post_form(
            web,
            "/console/api-keys/new",
            {"csrf_token": token, "name": "x", "merchant": "acme", "scopes": "webhooks:manage"},
        )
        assert wrong.status_code == 422
        assert "only the" in wrong.text
        created = await post_form(
            web,
            "/console/api-keys/new",
            {"csrf_token": token, "name": "shop backend", "scopes": ["webhooks:manage"]},
        )
        assert created.status_code == 201, created.text
        secret = created.text.split('id="secret" type="text" class="secret mono" readonly value="')[
            1
        ]
        secret = secret.split('"')[0]
        assert secret.startswith("tp_test_")
        key = {"Authorization": f"Bearer {secret}"}
        assert (
            await accounts.client.get("/v1/admin/webhook-endpoints", headers=key)
        ).status_code == 200
        listing = await web.get("/console/api-keys")
        assert "shop backend" in listing.text
        assert secret not in listing.text
        assert secret[-4:] in listing.text
        key_id = listing.text.split('action="/console/api-keys/')[1].split("/revoke")[0]
        assert (await post_form(web, f"/console/api-keys/{key_id}/revoke", {})).status_code == 403
        revoked = await post_form(
            web, f"/console/api-keys/{key_id}/revoke", {"csrf_token": csrf_of(listing.text)}
        )
        assert revoked.status_code == 303
        assert (
            await accounts.client.get("/v1/admin/webhook-endpoints", headers=key)
        ).status_code == 401
        assert (await web.get("/console/api-keys")).text.count(secret) == 0
        audit = await web.get("/console/audit", params={"target_type": "api_key"})
        assert "api_key.created" in audit.text
        assert "api_key.revoked" in audit.text


async def test_api_key_creation_needs_step_up(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        admin = await _console_admin(accounts, web)
        token = csrf_of((await web.get("/console/api-keys/new")).text)
        await _age_session(accounts, admin)
        stale = await post_form(
            web,
            "/console/api-keys/new",
            {"csrf_token": token, "name": "k", "scopes": "events:read"},
        )
        assert stale.status_code == 303
        assert "/console/reauth" in stale.headers["location"]
        assert "tp_test_" not in stale.text


async def test_ledger_page_shows_balanced_totals(
    accounts: Accounts, shop: Shop, checkout: Checkout
) -> None:
    customer = await shop.customer()
    await checkout.paid_order(customer, price=2500)
    async with browser(accounts.client) as web:
        await _console_admin(accounts, web)
        page = await web.get("/console/ledger")
        assert page.status_code == 200
        assert "Balanced: debits = credits" in page.text
        assert "Debits USD 25.00 = credits USD 25.00" in page.text
        account_id = page.text.split('href="/console/ledger/accounts/')[1].split('"')[0]
        entries = await web.get(f"/console/ledger/accounts/{account_id}")
        assert entries.status_code == 200
        assert "USD 25.00" in entries.text
        assert (await web.get("/console/ledger/accounts/lac_nope")).status_code == 404
        vendors = await web.get("/console/vendors")
        assert vendors.status_code == 200
        assert "USD" in vendors.text


async def test_audit_export_downloads_the_api_export(accounts: Accounts) -> None:
    async with browser(accounts.client) as web:
        admin = await _console_admin(accounts, web)
        csv = await web.get("/console/audit/export", params={"format": "csv"})
        assert csv.status_code == 200
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.headers["content-disposition"] == 'attachment; filename="audit-events.csv"'
        assert csv.text.startswith("id,occurred_at,")
        assert admin.user_id in csv.text
        nd = await web.get(
            "/console/audit/export", params={"format": "ndjson", "action": "auth.login"}
        )
        assert nd.status_code == 200
        assert '"action":"auth.login"' in nd.text
        assert (await web.get("/console/audit/export", params={"format": "xml"})).status_code == 422
        assert (
            await web.get("/console/audit", params={"occurred_from": "soon"})
        ).status_code == 400
