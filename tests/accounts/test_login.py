"""Password login, 2FA login, logout."""

from __future__ import annotations

import httpx
import jwt

from tests.accounts.helpers import Accounts, bearer
from tests.http.test_errors import assert_problem


async def test_login_returns_an_access_and_a_refresh_token(accounts: Accounts) -> None:
    account = await accounts.register()
    response = await accounts.login(account)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 43
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "role"} <= set(claims)
    assert claims["role"] == "CUSTOMER"


async def test_unverified_users_can_sign_in(accounts: Accounts) -> None:
    account = await accounts.register()
    assert (await accounts.login(account)).status_code == 200


async def test_wrong_password_is_401(accounts: Accounts) -> None:
    account = await accounts.register()
    account.password = account.password + "x"
    body = assert_problem(await accounts.login(account), 401)
    assert body["code"] == "invalid_credentials"


async def test_password_is_checked_exactly(accounts: Accounts) -> None:
    account = await accounts.register()
    original = account.password
    for variant in (original.upper(), original + " ", " " + original, original[:-1]):
        account.password = variant
        assert (await accounts.login(account)).status_code == 401


async def test_each_login_creates_a_fresh_session(accounts: Accounts) -> None:
    account = await accounts.register()
    first = (await accounts.login(account)).json()
    second = (await accounts.login(account)).json()
    assert first["session_id"] != second["session_id"]
    assert first["refresh_token"] != second["refresh_token"]


async def test_logout_revokes_the_access_and_refresh_tokens(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.post("/v1/auth/logout", headers=account.headers)
    assert response.status_code == 204
    assert response.headers["clear-site-data"] == '"cache", "cookies", "storage"'
    assert_problem(await accounts.client.get("/v1/me", headers=account.headers), 401)
    refresh = await accounts.client.post(
        "/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert_problem(refresh, 401)


async def test_login_with_2fa_needs_a_second_step(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    first = await accounts.login(account)
    assert first.status_code == 200
    body = first.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    second = await accounts.login_mfa(account, body["mfa_token"])
    assert second.status_code == 200
    me = await accounts.client.get("/v1/me", headers=account.headers)
    assert me.status_code == 200


async def test_mfa_pending_token_is_not_an_access_token(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    mfa_token = (await accounts.login(account)).json()["mfa_token"]
    response = await accounts.client.get("/v1/me", headers=bearer(mfa_token))
    assert_problem(response, 401)


async def test_totp_code_cannot_be_used_twice(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    first = (await accounts.login(account)).json()["mfa_token"]
    ok = await accounts.login_mfa(account, first)
    assert ok.status_code == 200
    used_code_step = account.last_step
    account.last_step = used_code_step - 1  # replay the very same code
    second = (await accounts.login(account)).json()["mfa_token"]
    replay = await accounts.login_mfa(account, second)
    body = assert_problem(replay, 401)
    assert body["code"] == "invalid_mfa_code"


async def test_recovery_code_signs_in_once(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    code = account.recovery_codes[0]
    for expected in (200, 401):
        mfa_token = (await accounts.login(account)).json()["mfa_token"]
        response = await accounts.client.post(
            "/v1/auth/login/mfa", json={"mfa_token": mfa_token, "recovery_code": code}
        )
        assert response.status_code == expected


async def test_wrong_totp_code_is_refused(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    mfa_token = (await accounts.login(account)).json()["mfa_token"]
    response = await accounts.client.post(
        "/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": "000000"}
    )
    assert response.status_code == 401


async def test_access_token_in_the_query_string_is_ignored(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    response = await client.get("/v1/me", params={"access_token": account.access_token})
    assert_problem(response, 401)
