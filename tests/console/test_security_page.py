"""``/console/security`` over HTTP, on SQLite and PostgreSQL: a console user without 2FA
enrols in the browser (step-up, QR and key, one code, recovery codes shown once) through
the API's own services, and the same console session then carries 2FA."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import httpx
import pyotp
from sqlalchemy import select, update

from tests.accounts.helpers import Account, Accounts
from tests.console.helpers import browser, csrf_of, forget_used_codes, post_form, sign_in
from tillpay.accounts.models import AuthSession, RecoveryCode, Role, User
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow
from tillpay.notifications.mail import read_mailbox

ENROL = "/console/security/2fa"
CODES = "/console/security/recovery-codes"
_SECRET = re.compile(r'value="([A-Z2-7]{32})"[^>]*data-totp-secret')
_CODES = re.compile(r"<li data-recovery-code>([^<]+)</li>")


def secret_of(page: str) -> str:
    found = _SECRET.search(page)
    assert found, "no TOTP key on the page"
    return found.group(1)


def code_for(secret: str, *, offset_steps: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(utcnow() + timedelta(seconds=30 * offset_steps))


async def _user(accounts: Accounts, email: str) -> User:
    async with accounts.database.session() as session:
        return (await session.execute(select(User).where(User.email == email))).scalar_one()


async def _actions(accounts: Accounts, user_id: str) -> list[tuple[str, str]]:
    async with accounts.database.session() as session:
        rows = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.outcome)
                .where(AuditEvent.target_id == user_id, AuditEvent.action.like("auth.totp%"))
                .order_by(AuditEvent.occurred_at)
            )
        ).all()
    return [(a, o) for a, o in rows]


async def _start(web: httpx.AsyncClient) -> httpx.Response:
    """From the security page, press "Set up two-factor authentication"."""
    state = await web.get("/console/security")
    assert state.status_code == 200, state.text
    assert "not set up" in state.text
    return await post_form(web, ENROL, {"csrf_token": csrf_of(state.text)})


async def _signed_in(web: httpx.AsyncClient, account: Account) -> None:
    done = await sign_in(web, account)
    assert done.status_code == 303, done.text


async def test_an_admin_without_2fa_enrols_in_the_console_and_opens_admin_pages(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        signed = await sign_in(web, admin)
        # An administrator without 2FA lands on the set-up page, not on a 403.
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console/security"
        refused = await web.get("/console/customers")
        assert refused.status_code == 403
        assert "Set up two-factor authentication" in refused.text
        assert 'href="/console/security"' in refused.text

        enrol = await _start(web)
        assert enrol.status_code == 200, enrol.text
        assert 'src="data:image/svg+xml;base64,' in enrol.text
        assert "img-src 'self' data:" in enrol.headers["content-security-policy"]
        assert "default-src 'none'" in enrol.headers["content-security-policy"]
        secret = secret_of(enrol.text)
        # The GET (where a step-up comes back) shows the same enrolment, not a new one.
        again = await web.get(ENROL)
        assert secret_of(again.text) == secret

        done = await post_form(
            web, f"{ENROL}/confirm", {"csrf_token": csrf_of(enrol.text), "code": code_for(secret)}
        )
        assert done.status_code == 200, done.text
        assert "no-store" in done.headers["cache-control"]
        codes = [html.unescape(c) for c in _CODES.findall(done.text)]
        assert len(codes) == 10
        assert 'href="/console">Continue to the console' in done.text

        # The same console session is now a 2FA session: admin pages answer.
        for path in ("/console", "/console/customers", "/console/audit"):
            page = await web.get(path)
            assert page.status_code == 200, (path, page.text[:300])
        state = await web.get("/console/security")
        assert "enabled for your account" in state.text
        assert "This session was opened with it." in state.text
        assert not _CODES.findall(state.text)  # the codes are shown once only
        audit = await web.get("/console/audit", params={"action": "auth.totp_enabled"})
        assert admin.user_id in audit.text

    user = await _user(accounts, admin.email)
    assert user.totp_enabled_at is not None
    actions = await _actions(accounts, admin.user_id)
    assert ("auth.totp_enroll_started", "success") in actions
    assert ("auth.totp_enabled", "success") in actions
    # Other sessions (the API login) were signed out.
    assert (await accounts.client.get("/v1/me", headers=admin.headers)).status_code == 401
    # A new sign-in asks for the code; a recovery code from the page works.
    admin.totp_secret = secret
    admin.last_step = pyotp.TOTP(secret).timecode(utcnow())
    async with browser(accounts.client) as web:
        await _signed_in(web, admin)
        assert (await web.get("/console/customers")).status_code == 200
    async with accounts.database.session() as session:
        stored = (
            await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id))
        ).scalars()
        assert len(list(stored)) == len(codes)


async def test_a_wrong_code_is_refused_and_nothing_is_enabled(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        await _signed_in(web, admin)
        enrol = await _start(web)
        secret = secret_of(enrol.text)
        wrong = str((int(code_for(secret)) + 1) % 1_000_000).zfill(6)
        for code in (wrong, "abcdef", ""):
            refused = await post_form(
                web, f"{ENROL}/confirm", {"csrf_token": csrf_of(enrol.text), "code": code}
            )
            assert refused.status_code == 400, (code, refused.text[:300])
            assert "The code is invalid." in refused.text
            assert secret_of(refused.text) == secret  # the same form, the same key
            assert not _CODES.findall(refused.text)
        assert (await web.get("/console/customers")).status_code == 403
    user = await _user(accounts, admin.email)
    assert user.totp_enabled_at is None
    async with accounts.database.session() as session:
        stored = (
            await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id))
        ).scalars()
        assert list(stored) == []
    actions = await _actions(accounts, admin.user_id)
    assert ("auth.totp_enabled", "failure") in actions
    assert ("auth.totp_enabled", "success") not in actions
    assert (await accounts.client.get("/v1/me", headers=admin.headers)).status_code == 200


async def _age(accounts: Accounts, user_id: str) -> None:
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(auth_time=utcnow() - timedelta(hours=2))
        )


async def test_enrolling_after_an_old_sign_in_asks_to_confirm_it_is_you(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        await _signed_in(web, admin)
        state = await web.get("/console/security")
        await _age(accounts, admin.user_id)
        stale = await post_form(web, ENROL, {"csrf_token": csrf_of(state.text)})
        assert stale.status_code == 303
        assert stale.headers["location"] == f"/console/reauth?next={ENROL}"
        assert (await _user(accounts, admin.email)).totp_secret_encrypted is None
        reauth = await web.get(stale.headers["location"])
        assert 'name="code"' not in reauth.text  # no 2FA yet: the password only
        stepped = await post_form(
            web,
            "/console/reauth",
            {"csrf_token": csrf_of(reauth.text), "password": admin.password, "next": ENROL},
        )
        assert stepped.status_code == 303
        assert stepped.headers["location"] == ENROL
        back = await web.get(ENROL)  # the start button again, now with a fresh sign-in
        assert back.status_code == 200
        enrol = await post_form(web, ENROL, {"csrf_token": csrf_of(back.text)})
        assert enrol.status_code == 200
        secret = secret_of(enrol.text)
        # Aged again between the QR and the code: step-up, then the same enrolment.
        await _age(accounts, admin.user_id)
        confirm = {"csrf_token": csrf_of(enrol.text), "code": code_for(secret)}
        stale = await post_form(web, f"{ENROL}/confirm", confirm)
        assert stale.status_code == 303
        assert stale.headers["location"] == f"/console/reauth?next={ENROL}/confirm"
        back = await web.get(f"{ENROL}/confirm")
        assert back.status_code == 303
        assert back.headers["location"] == ENROL
        assert (await _user(accounts, admin.email)).totp_enabled_at is None


async def test_the_forms_refuse_a_post_without_the_csrf_token(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        await _signed_in(web, admin)
        no_token = await post_form(web, ENROL, {})
        assert no_token.status_code == 403
        # Only the 2FA refusal offers the set-up link.
        assert "Set up two-factor authentication" not in no_token.text
        enrol = await _start(web)
        secret = secret_of(enrol.text)
        missing = await post_form(web, f"{ENROL}/confirm", {"code": code_for(secret)})
        assert missing.status_code == 403
        forged = await post_form(
            web, f"{ENROL}/confirm", {"csrf_token": "x" * 40, "code": code_for(secret)}
        )
        assert forged.status_code == 403
        cross = await post_form(
            web,
            f"{ENROL}/confirm",
            {"csrf_token": csrf_of(enrol.text), "code": code_for(secret)},
            **{"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
    assert (await _user(accounts, admin.email)).totp_enabled_at is None


async def test_a_vendor_enrols_too(accounts: Accounts) -> None:
    vendor = await accounts.user(role=Role.VENDOR)
    async with browser(accounts.client) as web:
        signed = await sign_in(web, vendor)
        assert signed.headers["location"] == "/console"  # vendors land on the overview
        overview = await web.get("/console")
        assert 'href="/console/security"' in overview.text  # in the sidebar
        assert "Administrators need it" not in (await web.get("/console/security")).text
        enrol = await _start(web)
        secret = secret_of(enrol.text)
        done = await post_form(
            web, f"{ENROL}/confirm", {"csrf_token": csrf_of(enrol.text), "code": code_for(secret)}
        )
        assert done.status_code == 200
        assert len(_CODES.findall(done.text)) == 10
        assert (await web.get("/console/payments")).status_code == 200
        # Already enrolled: the page says so and offers no second enrolment.
        state = await web.get("/console/security")
        assert "enabled for your account" in state.text
        assert f'action="{ENROL}"' not in state.text
        assert (await web.get(ENROL)).headers["location"] == "/console/security"
        twice = await post_form(web, ENROL, {"csrf_token": csrf_of(state.text)})
        assert twice.status_code == 409
        assert "already enabled" in twice.text
    assert (await _user(accounts, vendor.email)).totp_enabled_at is not None
    actions = await _actions(accounts, vendor.user_id)
    assert ("auth.totp_enabled", "success") in actions


async def test_an_admin_with_2fa_sees_it_on(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    async with browser(accounts.client) as web:
        signed = await sign_in(web, admin)
        assert signed.headers["location"] == "/console"
        state = await web.get("/console/security")
        assert state.status_code == 200
        assert "enabled for your account" in state.text
        assert "2FA off" not in state.text


async def test_sign_in_keeps_an_explicit_next(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        signed = await sign_in(web, admin, next_path="/console/payments")
        assert signed.headers["location"] == "/console/payments"
    async with browser(accounts.client) as web:
        signed = await sign_in(web, admin, next_path="https://evil.example/")
        assert signed.headers["location"] == "/console/security"


async def test_new_recovery_codes_need_a_code_and_replace_the_old_ones(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    async with browser(accounts.client) as web:
        await _signed_in(web, admin)
        await forget_used_codes(accounts.database, admin)
        state = await web.get("/console/security")
        assert 'action="/console/security/recovery-codes"' in state.text
        token = csrf_of(state.text)
        assert (await post_form(web, CODES, {"code": admin.next_code()})).status_code == 403
        refused = await post_form(web, CODES, {"csrf_token": token, "code": "000000"})
        assert refused.status_code == 400
        assert "The code is invalid." in refused.text
        assert not _CODES.findall(refused.text)
        await _age(accounts, admin.user_id)
        stale = await post_form(web, CODES, {"csrf_token": token, "code": admin.next_code()})
        assert stale.status_code == 303
        assert stale.headers["location"] == f"/console/reauth?next={CODES}"
        async with accounts.database.session() as session, session.begin():
            await session.execute(update(AuthSession).values(auth_time=utcnow()))
        await forget_used_codes(accounts.database, admin)
        done = await post_form(web, CODES, {"csrf_token": token, "code": admin.next_code()})
        assert done.status_code == 200, done.text
        assert "no-store" in done.headers["cache-control"]
        assert "New recovery codes" in done.text
        codes = [html.unescape(c) for c in _CODES.findall(done.text)]
        assert len(codes) == 10
        assert not set(codes) & set(admin.recovery_codes)
    actions = await _actions_named(accounts, admin.user_id, "auth.recovery_codes_regenerated")
    assert actions == ["failure", "success"]
    mails = read_mailbox(accounts.mail_dir, to=admin.email, category="security_notice")
    assert any("New recovery codes were generated." in str(m) for m in mails)


async def _actions_named(accounts: Accounts, user_id: str, action: str) -> list[str]:
    async with accounts.database.session() as session:
        rows = await session.execute(
            select(AuditEvent.outcome)
            .where(AuditEvent.target_id == user_id, AuditEvent.action == action)
            .order_by(AuditEvent.occurred_at)
        )
        return list(rows.scalars())


async def test_an_admin_without_2fa_is_offered_only_the_security_page(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    async with browser(accounts.client) as web:
        assert (await sign_in(web, admin)).status_code == 303
        page = await web.get("/console/security")
        assert page.status_code == 200
        nav = page.text[page.text.index("<nav") : page.text.index("</nav>")]
        assert 'href="/console/security"' in nav
        for refused in (
            "/console/orders",
            "/console/vendors",
            "/console/ledger",
            "/console/payments",
        ):
            assert f'href="{refused}"' not in nav, refused
