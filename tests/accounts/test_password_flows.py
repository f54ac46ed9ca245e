"""Forgot/reset and change password, and how passwords are stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import PASSWORD, Account, Accounts, latest_token
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import AccountToken, TokenPurpose, User
from tillpay.kit.db import utcnow

NEW_PASSWORD = "a completely different passphrase 9"
ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
# The suite hashes cheaply (tests/conftest.py); these tests need the production cost.
OWASP_COST = {"password_hash_memory_kib": 19456, "password_hash_iterations": 2}


@pytest.fixture
async def owasp_accounts(
    clean_db: None, make_client: ClientFactory, mail_dir: Path
) -> AsyncIterator[Accounts]:
    async with make_client(**OWASP_COST) as client:
        yield Accounts(client, mail_dir)


async def _reset_token(accounts: Accounts, account: Account) -> str:
    response = await accounts.client.post("/v1/auth/password/forgot", json={"email": account.email})
    assert response.status_code == 202
    return latest_token(accounts.mail_dir, account.email, "password_reset")


async def _reset(accounts: Accounts, token: str, password: str = NEW_PASSWORD) -> int:
    response = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": password}
    )
    return response.status_code


async def _stored_hash(accounts: Accounts, email: str) -> str:
    async with accounts.database.session() as session:
        return (await session.execute(select(User.password_hash).where(User.email == email))).one()[
            0
        ]


async def test_reset_link_sets_a_new_password_once(accounts: Accounts) -> None:
    account = await accounts.user()
    token = await _reset_token(accounts, account)
    assert await _reset(accounts, token) == 204
    assert await _reset(accounts, token, "yet another long passphrase 3") == 400
    account.password = NEW_PASSWORD
    assert (await accounts.login(account)).status_code == 200


async def test_old_password_stops_working_after_a_reset(accounts: Accounts) -> None:
    account = await accounts.register()
    assert await _reset(accounts, await _reset_token(accounts, account)) == 204
    assert_problem(await accounts.login(account), 401)


async def test_expired_reset_link_is_rejected(accounts: Accounts) -> None:
    account = await accounts.register()
    token = await _reset_token(accounts, account)
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(AccountToken)
            .where(AccountToken.purpose == TokenPurpose.RESET_PASSWORD)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert assert_problem(response, 400)["code"] == "invalid_token"
    assert (await accounts.login(account)).status_code == 200


async def test_reset_link_changes_only_its_own_account(accounts: Accounts) -> None:
    alice = await accounts.register()
    bob = await accounts.register()
    assert await _reset(accounts, await _reset_token(accounts, alice)) == 204
    assert (await accounts.login(bob)).status_code == 200
    bob.password = NEW_PASSWORD
    assert (await accounts.login(bob)).status_code == 401


async def test_verification_token_is_not_a_reset_token(accounts: Accounts) -> None:
    account = await accounts.register()
    token = latest_token(accounts.mail_dir, account.email, "verify_email")
    assert await _reset(accounts, token) == 400
    assert (await accounts.login(account)).status_code == 200


async def test_reset_does_not_sign_in_and_2fa_still_applies(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    token = await _reset_token(accounts, account)
    response = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert response.content == b""
    assert "set-cookie" not in response.headers
    account.password = NEW_PASSWORD
    body = (await accounts.login(account)).json()
    assert body["mfa_required"] is True
    assert "access_token" not in body


async def test_reset_revokes_every_session(accounts: Accounts) -> None:
    account = await accounts.user()
    first = (account.access_token, account.refresh_token)
    await accounts.login(account)
    assert await _reset(accounts, await _reset_token(accounts, account)) == 204
    for access, refresh in (first, (account.access_token, account.refresh_token)):
        assert_problem(
            await accounts.client.get("/v1/me", headers={"Authorization": f"Bearer {access}"}), 401
        )
        response = await accounts.client.post("/v1/auth/refresh", json={"refresh_token": refresh})
        assert_problem(response, 401)


async def test_change_password_with_a_wrong_current_password_is_403(
    accounts: Accounts,
) -> None:
    account = await accounts.user()
    before = await _stored_hash(accounts, account.email)
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD + "x", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert assert_problem(response, 403)["code"] == "invalid_credentials"
    assert await _stored_hash(accounts, account.email) == before
    assert (await accounts.client.get("/v1/me", headers=account.headers)).status_code == 200


async def test_changed_password_replaces_the_old_one(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204
    assert_problem(await accounts.login(account), 401)
    account.password = NEW_PASSWORD
    assert (await accounts.login(account)).status_code == 200


async def test_password_change_keeps_only_the_current_session(accounts: Accounts) -> None:
    account = await accounts.user()
    other = account.headers
    await accounts.login(account)
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204
    assert (await accounts.client.get("/v1/me", headers=account.headers)).status_code == 200
    assert_problem(await accounts.client.get("/v1/me", headers=other), 401)


async def test_weak_new_password_is_refused_on_reset_and_on_change(accounts: Accounts) -> None:
    account = await accounts.user()
    token = await _reset_token(accounts, account)
    weak = "password1234"
    reset = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": weak}
    )
    change = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": weak},
        headers=account.headers,
    )
    for response in (reset, change):
        assert assert_problem(response, 422)["code"] == "weak_password"
        assert weak not in response.text
    assert (await accounts.login(account)).status_code == 200
    # The refused attempt rolled back, so the link still works.
    assert await _reset(accounts, token) == 204


async def test_imported_bcrypt_hash_signs_in_and_is_upgraded_to_argon2id(
    owasp_accounts: Accounts,
) -> None:
    accounts = owasp_accounts
    account = await accounts.register()
    imported = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(User).where(User.email == account.email).values(password_hash=imported)
        )
    assert (await accounts.login(account)).status_code == 200
    assert (await _stored_hash(accounts, account.email)).startswith(ARGON2_PREFIX)
    assert (await accounts.login(account)).status_code == 200


async def test_registration_stores_an_argon2id_hash_with_owasp_parameters(
    owasp_accounts: Accounts,
) -> None:
    accounts = owasp_accounts
    account = await accounts.register()
    stored = await _stored_hash(accounts, account.email)
    assert stored.startswith(ARGON2_PREFIX)
    assert PASSWORD not in stored
