"""Refresh-token rotation, reuse detection (RFC 9700 §4.14), lifetimes and the cookie mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import Account, Accounts, bearer
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import AuthSession
from tillpay.audit.models import AuditEvent

COOKIE = "__Host-tillpay_refresh"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def set_session(accounts: Accounts, session_id: str, **values: Any) -> None:
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(AuthSession).where(AuthSession.id == session_id).values(**values)
        )


def refresh_cookie(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The refresh cookie's value and its attributes (lower-cased names) from Set-Cookie."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    morsel = SimpleCookie(headers[0])[COOKIE]
    attributes = {k.lower(): str(v) for k, v in morsel.items() if v}
    return morsel.value, attributes


async def test_refresh_returns_a_new_working_pair_for_the_same_session(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    response = await refresh(client, account.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == account.session_id
    assert body["refresh_token"] != account.refresh_token
    assert body["access_token"] != account.access_token
    assert (await client.get("/v1/me", headers=bearer(body["access_token"]))).status_code == 200
    assert (await refresh(client, body["refresh_token"])).status_code == 200


async def test_refresh_does_not_extend_the_absolute_lifetime(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.register()
    login = (await accounts.login(account)).json()
    expires_at = datetime.fromisoformat(login["refresh_expires_at"])
    ttl = client.app.state.accounts.settings.session_absolute_ttl_seconds  # type: ignore[attr-defined]
    expected = datetime.now(UTC) + timedelta(seconds=ttl)
    assert abs((expires_at - expected).total_seconds()) < 60
    rotated = (await refresh(client, account.refresh_token)).json()
    assert datetime.fromisoformat(rotated["refresh_expires_at"]) == expires_at


async def test_replaying_a_rotated_refresh_token_revokes_the_whole_session(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    rotated = (await refresh(client, account.refresh_token)).json()

    body = assert_problem(await refresh(client, account.refresh_token), 401)
    assert body["code"] == "invalid_refresh_token"

    assert_problem(await refresh(client, rotated["refresh_token"]), 401)
    for access_token in (account.access_token, rotated["access_token"]):
        assert_problem(await client.get("/v1/me", headers=bearer(access_token)), 401)


async def test_refresh_reuse_is_audited(accounts: Accounts, client: httpx.AsyncClient) -> None:
    account = await accounts.user()
    await refresh(client, account.refresh_token)
    await refresh(client, account.refresh_token)
    async with accounts.database.session() as session:
        events = (
            (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.action == "auth.refresh_reuse")
                )
            )
            .scalars()
            .all()
        )
    assert [(e.target_id, e.actor_id, e.outcome) for e in events] == [
        (account.session_id, account.user_id, "failure")
    ]
    assert account.refresh_token not in str(events[0].details)


async def test_parallel_refreshes_with_one_token_cannot_both_succeed(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    responses = await asyncio.gather(
        refresh(client, account.refresh_token), refresh(client, account.refresh_token)
    )
    assert sorted(r.status_code for r in responses) == [200, 401]
    # The loser is indistinguishable from a thief replaying the token: the session ends.
    winner = next(r for r in responses if r.status_code == 200).json()
    assert_problem(await client.get("/v1/me", headers=bearer(winner["access_token"])), 401)
    assert_problem(await refresh(client, winner["refresh_token"]), 401)


async def test_a_session_past_its_absolute_lifetime_cannot_refresh(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    await set_session(
        accounts, account.session_id, absolute_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert_problem(await refresh(client, account.refresh_token), 401)


async def test_a_session_idle_past_the_timeout_cannot_refresh(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await accounts.user()
    idle = client.app.state.accounts.settings.session_idle_timeout_seconds  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    await set_session(
        accounts, account.session_id, last_used_at=now - timedelta(seconds=idle - 120)
    )
    rotated = await refresh(client, account.refresh_token)
    assert rotated.status_code == 200
    await set_session(accounts, account.session_id, last_used_at=now - timedelta(seconds=idle + 1))
    assert_problem(await refresh(client, rotated.json()["refresh_token"]), 401)


async def test_refresh_cookie_is_off_by_default(accounts: Accounts) -> None:
    account = await accounts.register()
    response = await accounts.login(account)
    assert response.status_code == 200
    assert "set-cookie" not in response.headers


# ----------------------------------------------------------------------------- cookie mode


@pytest.fixture
async def cookie_accounts(
    clean_db: None, make_client: ClientFactory, mail_dir: Path
) -> AsyncIterator[Accounts]:
    async with make_client(refresh_cookie_enabled=True) as client:
        yield Accounts(client, mail_dir)


async def signed_in(accounts: Accounts) -> tuple[Account, httpx.Response]:
    account = await accounts.register()
    response = await accounts.login(account)
    assert response.status_code == 200, response.text
    return account, response


async def test_login_sets_a_host_prefixed_secure_http_only_strict_cookie(
    cookie_accounts: Accounts,
) -> None:
    account, response = await signed_in(cookie_accounts)
    value, attributes = refresh_cookie(response)
    assert value == account.refresh_token
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/"
    assert "domain" not in attributes


async def test_refresh_works_with_the_cookie_and_an_empty_body(
    cookie_accounts: Accounts,
) -> None:
    account, _ = await signed_in(cookie_accounts)
    client = cookie_accounts.client
    token = account.refresh_token
    # A browser's fetch() without a body, and a JSON body that omits the token.
    bodies: tuple[dict[str, Any], ...] = ({}, {"json": {}})
    for body in bodies:
        response = await client.post(
            "/v1/auth/refresh", headers={"Cookie": f"{COOKIE}={token}"}, **body
        )
        assert response.status_code == 200, response.text
        value, _ = refresh_cookie(response)
        assert value == response.json()["refresh_token"] != token
        token = value


async def test_refresh_without_a_token_or_cookie_is_a_400(cookie_accounts: Accounts) -> None:
    response = await cookie_accounts.client.post("/v1/auth/refresh")
    body = assert_problem(response, 400)
    assert body["code"] == "missing_refresh_token"


async def test_logout_clears_the_refresh_cookie(cookie_accounts: Accounts) -> None:
    account, _ = await signed_in(cookie_accounts)
    response = await cookie_accounts.client.post("/v1/auth/logout", headers=account.headers)
    assert response.status_code == 204
    value, attributes = refresh_cookie(response)
    assert value == ""
    assert attributes["max-age"] == "0"
    # Browsers only apply a deletion of a __Host- cookie carrying these same attributes.
    assert "secure" in attributes
    assert attributes["path"] == "/"
    assert "domain" not in attributes
