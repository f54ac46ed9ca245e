"""Changes made to users and sessions in the database itself (SQL, an operator's script,
another service) bite on the very next request: no cached authorization state may let a
request through that the database would refuse, and a vanished user is a 401, never a 500.

Each test uses the token once first, so on the PostgreSQL + Redis variant any
per-session cache would be primed before the change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import Account, Accounts
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import AuthSession, Role, User
from tillpay.accounts.principal import Principal
from tillpay.carts import service as carts_service
from tillpay.kit.db import utcnow


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ratelimit_policies={"auth": "1000/minute"}) as c:
        yield c


async def signed_in(accounts: Accounts) -> Account:
    account = await accounts.user()
    response = await accounts.client.get("/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return account


async def execute(accounts: Accounts, statement: Any) -> None:
    async with accounts.database.session() as session, session.begin():
        await session.execute(statement)


async def test_a_user_deleted_in_the_database_is_signed_out_at_once(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await signed_in(accounts)
    await execute(accounts, delete(User).where(User.id == account.user_id))

    assert_problem(await client.get("/v1/me", headers=account.headers), 401)


async def test_a_write_by_a_deleted_user_is_a_401_not_a_foreign_key_500(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await signed_in(accounts)
    await execute(accounts, delete(User).where(User.id == account.user_id))

    cart = await client.delete("/v1/cart", headers=account.headers)
    assert_problem(cart, 401)
    response = await client.patch("/v1/me", json={"display_name": "Ghost"}, headers=account.headers)
    assert_problem(response, 401)


async def test_a_session_revoked_in_the_database_ends_at_once(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await signed_in(accounts)
    await execute(
        accounts,
        update(AuthSession)
        .where(AuthSession.id == account.session_id)
        .values(revoked_at=utcnow(), revoked_reason="operator"),
    )

    assert_problem(await client.get("/v1/me", headers=account.headers), 401)


async def test_a_user_deactivated_in_the_database_is_signed_out_at_once(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await signed_in(accounts)
    await execute(accounts, update(User).where(User.id == account.user_id).values(is_active=False))

    assert_problem(await client.get("/v1/me", headers=account.headers), 401)


async def test_a_role_changed_in_the_database_invalidates_live_tokens_at_once(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    account = await signed_in(accounts)
    await accounts.set_role(account, Role.VENDOR)

    assert_problem(await client.get("/v1/me", headers=account.headers), 401)


async def test_a_user_deleted_while_their_request_runs_gets_a_401_not_a_500(
    accounts: Accounts, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user vanishes after the token check but before the request's write (a
    concurrent delete): the foreign-key violation is answered as the token's 401."""
    account = await signed_in(accounts)
    deleted: list[str] = []
    empty_cart = carts_service.empty_cart

    async def delete_then_empty(session: AsyncSession, principal: Principal) -> Any:
        # Runs after the route's dependencies accepted the token: another connection
        # deletes the user, then the request goes on to write.
        await execute(accounts, delete(User).where(User.id == principal.user_id))
        deleted.append(principal.user_id)
        return await empty_cart(session, principal)

    monkeypatch.setattr(carts_service, "empty_cart", delete_then_empty)

    response = await client.delete("/v1/cart", headers=account.headers)

    assert deleted == [account.user_id]
    assert_problem(response, 401)
