"""TOTP enrolment, recovery codes, disabling, and 2FA for administrators."""

from __future__ import annotations

import base64
from datetime import timedelta

import pyotp
from sqlalchemy import select, update

from tests.accounts.helpers import PASSWORD, Account, Accounts
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import AuthSession, RecoveryCode, Role, User
from tillpay.kit.db import utcnow


async def _me(accounts: Accounts, account: Account) -> dict[str, object]:
    response = await accounts.client.get("/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _update_session(accounts: Accounts, session_id: str, **values: object) -> None:
    """Change a session row directly (the next request reads it)."""
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(AuthSession).where(AuthSession.id == session_id).values(**values)
        )


def _wrong_code(secret: str) -> str:
    """A code that no step within the accepted drift produces."""
    totp = pyotp.TOTP(secret)
    now = utcnow()
    valid = {totp.at(now + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222") if c not in valid)


async def _enroll(accounts: Accounts, account: Account) -> dict[str, str]:
    response = await accounts.client.post("/v1/auth/2fa/enroll", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    account.totp_secret = body["secret"]
    return body


async def test_enrolment_needs_a_recent_authentication(accounts: Accounts) -> None:
    account = await accounts.user()
    await _update_session(accounts, account.session_id, auth_time=utcnow() - timedelta(hours=1))
    stale = await accounts.client.post("/v1/auth/2fa/enroll", headers=account.headers)
    assert assert_problem(stale, 401)["code"] == "step_up_required"
    reauth = await accounts.client.post(
        "/v1/auth/reauthenticate", json={"password": PASSWORD}, headers=account.headers
    )
    assert reauth.status_code == 204
    fresh = await accounts.client.post("/v1/auth/2fa/enroll", headers=account.headers)
    assert fresh.status_code == 200


async def test_reauthentication_with_a_wrong_password_does_not_unlock(
    accounts: Accounts,
) -> None:
    account = await accounts.user()
    await _update_session(accounts, account.session_id, auth_time=utcnow() - timedelta(hours=1))
    reauth = await accounts.client.post(
        "/v1/auth/reauthenticate", json={"password": PASSWORD + "x"}, headers=account.headers
    )
    assert_problem(reauth, 401)
    stale = await accounts.client.post("/v1/auth/2fa/enroll", headers=account.headers)
    assert assert_problem(stale, 401)["code"] == "step_up_required"


async def test_enrolment_returns_secret_uri_and_svg_qr_code(accounts: Accounts) -> None:
    account = await accounts.user()
    body = await _enroll(accounts, account)
    parsed = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == body["secret"]
    assert parsed.issuer == "tillpay"
    assert parsed.name == account.email
    assert len(base64.b32decode(body["secret"])) >= 20
    prefix = "data:image/svg+xml;base64,"
    assert body["qr_svg"].startswith(prefix)
    assert b"<svg" in base64.b64decode(body["qr_svg"][len(prefix) :])


async def test_confirm_with_a_wrong_code_leaves_2fa_off(accounts: Accounts) -> None:
    account = await accounts.user()
    await _enroll(accounts, account)
    response = await accounts.client.post(
        "/v1/auth/2fa/confirm",
        json={"code": _wrong_code(account.totp_secret or "")},
        headers=account.headers,
    )
    assert assert_problem(response, 400)["code"] == "invalid_mfa_code"
    assert (await _me(accounts, account))["totp_enabled"] is False
    assert (await accounts.login(account)).json().get("mfa_required") is None


async def test_confirm_returns_ten_recovery_codes_stored_only_as_hashes(
    accounts: Accounts,
) -> None:
    account = await accounts.user(totp=True)
    codes = account.recovery_codes
    assert len(codes) == len(set(codes)) == 10
    assert (await _me(accounts, account))["totp_enabled"] is True
    async with accounts.database.session() as session:
        rows = (
            await session.execute(
                select(RecoveryCode.code_hash).where(RecoveryCode.user_id == account.user_id)
            )
        ).all()
    stored = " ".join(row[0] for row in rows).lower()
    assert len(rows) == 10
    for code in codes:
        assert code.lower() not in stored
        assert code.replace("-", "").lower() not in stored


async def test_enabling_2fa_signs_out_the_other_sessions(accounts: Accounts) -> None:
    account = await accounts.user()
    other = account.headers
    await accounts.login(account)
    await accounts.enable_totp(account)
    assert_problem(await accounts.client.get("/v1/me", headers=other), 401)
    assert (await accounts.client.get("/v1/me", headers=account.headers)).status_code == 200


async def test_totp_secret_is_stored_encrypted(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    assert account.totp_secret
    async with accounts.database.session() as session:
        blob = (
            await session.execute(
                select(User.totp_secret_encrypted).where(User.id == account.user_id)
            )
        ).scalar_one()
    assert blob
    assert account.totp_secret.encode() not in blob
    assert account.totp_secret.lower().encode() not in blob
    assert base64.b32decode(account.totp_secret) not in blob


async def test_disable_with_a_wrong_password_keeps_2fa_on(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD + "x", "code": account.next_code()},
        headers=account.headers,
    )
    assert assert_problem(response, 403)["code"] == "invalid_credentials"
    assert (await _me(accounts, account))["totp_enabled"] is True


async def test_disable_with_a_wrong_code_keeps_2fa_on(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD, "code": _wrong_code(account.totp_secret or "")},
        headers=account.headers,
    )
    assert_problem(response, 403)
    assert (await _me(accounts, account))["totp_enabled"] is True


async def test_disable_with_password_and_code_turns_2fa_off(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD, "code": account.next_code()},
        headers=account.headers,
    )
    assert response.status_code == 204
    assert (await _me(accounts, account))["totp_enabled"] is False
    assert "access_token" in (await accounts.login(account)).json()


async def test_regenerated_recovery_codes_replace_the_old_ones(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    old = account.recovery_codes
    response = await accounts.client.post(
        "/v1/auth/2fa/recovery-codes", json={"code": account.next_code()}, headers=account.headers
    )
    assert response.status_code == 200
    new = response.json()["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    for code, expected in ((old[0], 401), (new[0], 200)):
        mfa_token = (await accounts.login(account)).json()["mfa_token"]
        login = await accounts.client.post(
            "/v1/auth/login/mfa", json={"mfa_token": mfa_token, "recovery_code": code}
        )
        assert login.status_code == expected


async def test_admin_without_2fa_is_refused_on_admin_routes(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN)
    response = await accounts.client.get("/v1/admin/users", headers=admin.headers)
    assert assert_problem(response, 403)["code"] == "admin_2fa_required"


async def test_admin_with_2fa_cannot_sign_in_with_the_password_alone(
    accounts: Accounts,
) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    body = (await accounts.login(admin)).json()
    assert body["mfa_required"] is True
    assert "access_token" not in body


async def test_admin_session_without_a_2fa_login_is_refused(accounts: Accounts) -> None:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    before = await accounts.client.get("/v1/admin/users", headers=admin.headers)
    assert before.status_code == 200
    await _update_session(accounts, admin.session_id, mfa=False)
    response = await accounts.client.get("/v1/admin/users", headers=admin.headers)
    assert assert_problem(response, 403)["code"] == "admin_2fa_required"
