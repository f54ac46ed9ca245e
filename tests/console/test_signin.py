"""Console sign-in: the accounts services' rules, carried by a __Host- cookie session."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import Accounts
from tests.console.helpers import browser, csrf_of, hidden_fields, post_form, sign_in
from tillpay.accounts.models import AuthSession, Role
from tillpay.audit.models import AuditEvent

COOKIE = "__Host-tillpay_console"


def _set_cookie(response: Any, name: str) -> str:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    found = [h for h in headers if h.startswith(name + "=")]
    assert found, headers
    return found[-1]


async def test_sign_in_with_totp_sets_a_host_cookie_and_opens_the_console(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    async with browser(accounts.client) as web:
        done = await sign_in(web, admin)
        assert done.status_code == 303
        assert done.headers["location"] == "/console"
        cookie = _set_cookie(done, COOKIE)
        lowered = cookie.lower()
        assert "secure" in lowered
        assert "httponly" in lowered
        assert "samesite=strict" in lowered
        assert "path=/" in lowered
        assert "domain=" not in lowered
        page = await web.get("/console")
        assert page.status_code == 200
        assert admin.email in page.text
        assert "Sign out" in page.text
        assert "2FA off" not in page.text


async def test_wrong_code_is_refused_and_counted(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    async with browser(accounts.client) as web:
        page = await web.get("/console/login")
        first = await post_form(
            web,
            "/console/login",
            {"csrf_token": csrf_of(page.text), "email": admin.email, "password": admin.password},
        )
        assert first.status_code == 200
        assert 'name="mfa_token"' in first.text
        wrong = await post_form(
            web, "/console/login/code", {**hidden_fields(first.text), "code": "000000"}
        )
        assert wrong.status_code == 401
        assert "The code is invalid." in wrong.text
        assert COOKIE not in wrong.headers.get("set-cookie", "")
        assert (await web.get("/console")).status_code == 303
    async with accounts.database.session() as session:
        failures = (
            (
                await session.execute(
                    select(AuditEvent).where(
                        AuditEvent.action == "auth.mfa", AuditEvent.outcome == "failure"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert any(f.actor_id == admin.user_id for f in failures)


async def test_wrong_password_rerenders_the_form_and_is_audited(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        page = await web.get("/console/login")
        response = await post_form(
            web,
            "/console/login",
            {"csrf_token": csrf_of(page.text), "email": vendor.email, "password": "wrong!"},
        )
        assert response.status_code == 401
        assert "The email or password is incorrect." in response.text
        assert 'name="csrf_token"' in response.text  # the form again, usable


async def test_lockout_applies_to_the_console(
    make_client: Any, clean_db: None, mail_dir: Any
) -> None:
    async with make_client(login_lockout_threshold=3) as client:
        accounts = Accounts(client, mail_dir)
        vendor = await accounts.user(role=Role.VENDOR)
        async with browser(client) as web:
            page = await web.get("/console/login")
            token = csrf_of(page.text)
            statuses = []
            for _ in range(4):
                response = await post_form(
                    web,
                    "/console/login",
                    {"csrf_token": token, "email": vendor.email, "password": "wrong!"},
                )
                statuses.append(response.status_code)
            assert statuses[-1] == 429, statuses
            # Even the right password is refused while locked out.
            right = await post_form(
                web,
                "/console/login",
                {"csrf_token": token, "email": vendor.email, "password": vendor.password},
            )
            assert right.status_code == 429


async def test_customer_is_refused_and_their_session_revoked(accounts: Accounts) -> None:
    customer = await accounts.user()
    async with browser(accounts.client) as web:
        response = await sign_in(web, customer)
        assert response.status_code == 403
        assert "administrators and vendors" in response.text
    async with accounts.database.session() as session:
        reasons = (
            (
                await session.execute(
                    select(AuthSession.revoked_reason).where(
                        AuthSession.user_id == customer.user_id
                    )
                )
            )
            .scalars()
            .all()
        )
    assert "console_refused" in reasons


async def test_admin_without_2fa_is_refused_where_the_api_refuses(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, admin)).status_code == 303
        # Every figure is deployment-wide data: refused like the admin API, saying why.
        overview = await web.get("/console")
        assert overview.status_code == 403
        assert "two-factor" in overview.text
        payments = await web.get("/console/payments")
        assert payments.status_code == 403
        assert "two-factor" in payments.text
    api = await accounts.client.get("/v1/admin/payments", headers=admin.headers)
    assert api.status_code == 403


async def test_revocation_takes_effect_at_the_next_page(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        assert (await web.get("/console")).status_code == 200
        async with accounts.database.session() as session, session.begin():
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == vendor.user_id, AuthSession.revoked_at.is_(None))
                .values(revoked_at=AuthSession.created_at)
            )
        gone = await web.get("/console/payments?status=captured")
        assert gone.status_code == 303
        assert gone.headers["location"].startswith("/console/login?next=/console/payments")


async def test_role_change_ends_the_console_session(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        await accounts.set_role(vendor, Role.CUSTOMER)
        assert (await web.get("/console")).status_code == 303


async def test_idle_timeout_expires_the_session(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        assert (await web.get("/console")).status_code == 200
        idle = accounts.client.app.state.settings.console_idle_timeout_seconds  # type: ignore[attr-defined]
        later = time.time() + idle + 5
        monkeypatch.setattr("tillpay.web.session.time.time", lambda: later)
        expired = await web.get("/console")
        assert expired.status_code == 303
        assert "/console/login" in expired.headers["location"]


async def test_activity_slides_the_idle_timeout(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        idle = accounts.client.app.state.settings.console_idle_timeout_seconds  # type: ignore[attr-defined]
        start = time.time()
        for step in (1, 2, 3):  # each visit within the timeout of the one before
            moment = start + step * (idle - 60)
            monkeypatch.setattr("tillpay.web.session.time.time", lambda m=moment: m)
            assert (await web.get("/console")).status_code == 200, step


async def test_sign_out_revokes_the_session(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        page = await web.get("/console")
        stolen = web.cookies.get(COOKIE)
        out = await post_form(web, "/console/logout", {"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303
        assert out.headers["location"].startswith("/console/login")
        assert (await web.get("/console")).status_code == 303
    # The cookie value itself is dead too (the AuthSession is revoked), not just deleted.
    async with browser(accounts.client) as other:
        other.cookies.set(COOKIE, stolen or "", domain="localhost")
        assert (await other.get("/console")).status_code == 303


async def test_a_cross_site_sign_out_leaves_the_cookie_alone(accounts: Accounts) -> None:
    """Another site's form post arrives without the SameSite=Strict cookie; its answer
    must not delete the cookie (Chromium applies a Set-Cookie on a top-level navigation's
    answer), or any site could sign operators out."""
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        kept = web.cookies.get(COOKIE)
        async with browser(accounts.client) as no_cookie:
            out = await no_cookie.post(
                "/console/logout",
                data={"csrf_token": "guess"},
                headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
            )
        assert out.status_code == 303
        assert "set-cookie" not in out.headers
        assert web.cookies.get(COOKIE) == kept
        assert (await web.get("/console")).status_code == 200


async def test_next_must_be_a_local_path(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    for evil in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        async with browser(accounts.client) as web:
            response = await sign_in(web, vendor, next_path=evil)
            assert response.headers["location"] == "/console", evil
