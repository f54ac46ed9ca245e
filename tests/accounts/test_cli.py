"""The `tillpay create-admin` and `tillpay keys rotate` commands, run in-process.

The commands run their own event loop (``asyncio.run``), so they are invoked in a worker
thread, against the same database the test's application uses.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from tests.accounts.helpers import PASSWORD, Accounts, unique_email
from tests.conftest import ClientFactory, _pg_admin, app_of
from tillpay import migrate
from tillpay.accounts.models import JwtSigningKey, Role, User
from tillpay.cli import app as cli
from tillpay.kit.db import Database, utcnow
from tillpay.settings import Settings

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


async def _run(settings: Settings, args: list[str], stdin: str = "") -> Result:
    env = {
        "TILLPAY_DATABASE_URL": settings.database_url.get_secret_value(),
        "TILLPAY_SECRET_KEY": settings.secret_key.get_secret_value(),
        "TILLPAY_ENVIRONMENT": "test",
        "TILLPAY_DATA_DIR": str(settings.data_dir),
    }
    invoke = functools.partial(CliRunner().invoke, cli, args, input=stdin, env=env)
    return await asyncio.to_thread(invoke)


async def _users(settings: Settings) -> list[User]:
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            return list((await session.execute(select(User))).scalars())
    finally:
        await database.dispose()


# ----------------------------------------------------------------------------- create-admin


async def test_create_admin_makes_a_verified_administrator(
    make_settings: Callable[..., Settings], clean_db: None
) -> None:
    settings = make_settings()
    email = unique_email("root")
    result = await _run(settings, ["create-admin", "--email", email, "--password-stdin"], PASSWORD)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    [user] = await _users(settings)
    assert user.email == email
    assert user.role is Role.ADMIN
    assert user.email_verified
    assert not user.totp_enabled
    assert user.password_hash.startswith("$argon2id$")
    assert user.id in result.stdout


async def test_create_admin_refuses_a_weak_password_with_the_reasons(
    make_settings: Callable[..., Settings], clean_db: None
) -> None:
    settings = make_settings()
    args = ["create-admin", "--email", unique_email("root"), "--password-stdin"]
    result = await _run(settings, args, "password1234\n")
    assert result.exit_code == 1
    assert "does not meet the policy" in result.stderr
    assert "too common" in result.stderr
    assert await _users(settings) == []


async def test_create_admin_refuses_an_empty_password(
    make_settings: Callable[..., Settings], clean_db: None
) -> None:
    settings = make_settings()
    args = ["create-admin", "--email", unique_email("root"), "--password-stdin"]
    result = await _run(settings, args, "\n")
    assert result.exit_code != 0
    assert "empty password" in result.stderr
    assert await _users(settings) == []


async def test_a_freshly_migrated_and_started_installation_has_no_accounts(
    backend: str,
    database_url: str,
    make_settings: Callable[..., Settings],
    make_client: ClientFactory,
    tmp_path: Path,
) -> None:
    name = f"tillpay_fresh_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    else:
        await _pg_admin(f'CREATE DATABASE "{name}"')
        url = f"{database_url.rsplit('/', 1)[0]}/{name}"
    try:
        await asyncio.to_thread(migrate.upgrade, make_settings(database_url=url))
        # Start the application too: start-up must not seed accounts either.
        async with make_client(database_url=url):
            users = await _users(make_settings(database_url=url))
    finally:
        if backend != "sqlite":
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert users == []


# ----------------------------------------------------------------------------- keys rotate


async def _jwks(client: httpx.AsyncClient) -> list[dict[str, str]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys: list[dict[str, str]] = response.json()["keys"]
    return keys


async def test_key_rotation_publishes_a_second_public_key(
    client: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    [old] = await _jwks(client)
    result = await _run(make_settings(), ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    await app_of(client).state.accounts.keys.reload()
    keys = await _jwks(client)
    kids = {key["kid"] for key in keys}
    assert len(kids) == 2
    assert old["kid"] in kids
    assert (kids - {old["kid"]}).pop() in result.stdout
    for key in keys:
        assert not PRIVATE_JWK_MEMBERS & set(key)


async def test_tokens_of_the_old_key_still_verify_after_the_new_key_takes_over(
    accounts: Accounts, make_settings: Callable[..., Settings]
) -> None:
    account = await accounts.user()
    old_kid = jwt.get_unverified_header(account.access_token)["kid"]
    old_headers = account.headers
    result = await _run(make_settings(), ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    # The new key signs once every process has had time to load it; skip that wait.
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(JwtSigningKey)
            .where(JwtSigningKey.kid != old_kid)
            .values(created_at=utcnow() - timedelta(minutes=10))
        )
    await app_of(accounts.client).state.accounts.keys.reload()
    await accounts.login(account)
    assert jwt.get_unverified_header(account.access_token)["kid"] != old_kid
    assert (await accounts.client.get("/v1/me", headers=old_headers)).status_code == 200
    assert (await accounts.client.get("/v1/me", headers=account.headers)).status_code == 200
