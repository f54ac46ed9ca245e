"""Session listing and revocation, effective on live access tokens at once.

Every test here checks a token right after the change, so any stale authorization state
(a cache, say) fails it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.accounts.helpers import Account, Accounts, latest_token
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import Role

NEW_PASSWORD = "a different long passphrase 7391"


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    """Scenarios here sign several people in; per-IP throttling is tested in test_abuse."""
    async with make_client(ratelimit_policies={"auth": "1000/minute"}) as c:
        yield c


async def another_session(
    accounts: Accounts, account: Account, *, user_agent: str | None = None
) -> Account:
    """The same user signed in once more (a second device), its token used once — which
    once."""
    other = dataclasses.replace(account)
    headers = {"User-Agent": user_agent} if user_agent else {}
    response = await accounts.client.post(
        "/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    other.access_token = body["access_token"]
    other.refresh_token = body["refresh_token"]
    other.session_id = body["session_id"]
    await assert_signed_in(accounts.client, other)
    return other


async def assert_signed_out(client: httpx.AsyncClient, account: Account) -> None:
    """Neither the session's access token nor its refresh token works any more."""
    assert_problem(await client.get("/v1/me", headers=account.headers), 401)
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refresh, 401)


async def assert_signed_in(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text


async def test_sessions_list_shows_device_ip_times_and_the_current_one(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    await another_session(accounts, account, user_agent="Firefox/128.0 (test phone)")
    response = await client.get("/v1/auth/sessions", headers=account.headers)
    assert response.status_code == 200
    sessions = {s["id"]: s for s in response.json()}
    assert len(sessions) == 2
    current = sessions.pop(account.session_id)
    (other,) = sessions.values()
    assert current["current"] is True
    assert other["current"] is False
    assert other["user_agent"] == "Firefox/128.0 (test phone)"
    for entry in (current, other):
        assert entry["ip"] == "127.0.0.1"
        created = datetime.fromisoformat(entry["created_at"])
        assert datetime.now(UTC) - timedelta(minutes=1) < created
        assert created <= datetime.fromisoformat(entry["last_used_at"])


async def test_revoking_one_session_ends_it_at_once_and_keeps_the_current_one(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    other = await another_session(accounts, account)
    response = await client.delete(f"/v1/auth/sessions/{other.session_id}", headers=account.headers)
    assert response.status_code == 204
    await assert_signed_out(client, other)
    await assert_signed_in(client, account)
    listed = (await client.get("/v1/auth/sessions", headers=account.headers)).json()
    assert [s["id"] for s in listed] == [account.session_id]


async def test_a_session_used_just_before_is_revoked_at_once(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    other = await another_session(accounts, account)
    await assert_signed_in(client, other)
    await client.delete(f"/v1/auth/sessions/{other.session_id}", headers=account.headers)
    assert_problem(await client.get("/v1/me", headers=other.headers), 401)


async def test_another_users_session_cannot_be_revoked(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    attacker = await accounts.user()
    victim = await accounts.user()
    response = await client.delete(
        f"/v1/auth/sessions/{victim.session_id}", headers=attacker.headers
    )
    body = assert_problem(response, 404)
    unknown = await client.delete("/v1/auth/sessions/ses_doesnotexist", headers=attacker.headers)
    assert assert_problem(unknown, 404)["detail"] == body["detail"]
    await assert_signed_in(client, victim)


async def test_revoke_others_ends_every_other_session(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    others = [await another_session(accounts, account) for _ in range(2)]
    response = await client.post("/v1/auth/sessions/revoke-others", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    for other in others:
        await assert_signed_out(client, other)
    await assert_signed_in(client, account)


async def test_password_change_ends_other_sessions_but_not_this_one(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    other = await another_session(accounts, account)
    response = await client.post(
        "/v1/auth/password/change",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204, response.text
    await assert_signed_out(client, other)
    await assert_signed_in(client, account)


async def test_password_reset_ends_every_session(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    other = await another_session(accounts, account)
    await client.post("/v1/auth/password/forgot", json={"email": account.email})
    token = latest_token(accounts.mail_dir, account.email, "password_reset")
    response = await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    for session in (account, other):
        await assert_signed_out(client, session)


async def test_deactivation_signs_the_user_out_at_once_and_refuses_login(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    response = await client.patch(
        f"/v1/admin/users/{user.user_id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    await assert_signed_out(client, user)
    assert_problem(await accounts.login(user), 401)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.VENDOR])
async def test_a_role_downgrade_invalidates_live_tokens_at_once(
    accounts: Accounts, client: httpx.AsyncClient, role: Role
) -> None:
    admin = await accounts.admin()
    user = await accounts.user(role=role)
    response = await client.patch(
        f"/v1/admin/users/{user.user_id}", json={"role": "CUSTOMER"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert_problem(await client.get("/v1/me", headers=user.headers), 401)


async def test_an_admin_can_sign_a_user_out_everywhere(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    other = await another_session(accounts, user)
    response = await client.post(
        f"/v1/admin/users/{user.user_id}/sessions/revoke", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 2}
    for session in (user, other):
        await assert_signed_out(client, session)
    await assert_signed_in(client, admin)
