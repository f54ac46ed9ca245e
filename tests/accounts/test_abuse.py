"""Abuse protection: no account enumeration, lockout, throttling, audit, clean logs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from tests.accounts.helpers import PASSWORD, Accounts, latest_token, unique_email
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import User
from tillpay.audit.models import AuditEvent
from tillpay.kit.passwords import PasswordHasher

RELAXED_AUTH = {"auth": "1000/minute"}


def _without_instance(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("instance", None)
    return body


@pytest.fixture
async def lockout_client(
    make_client: ClientFactory, clean_db: None
) -> AsyncIterator[httpx.AsyncClient]:
    """Lock an account after three failures; the per-IP policy stays out of the way."""
    async with make_client(
        login_lockout_threshold=3, login_lockout_base_seconds=60, ratelimit_policies=RELAXED_AUTH
    ) as client:
        yield client


# ----------------------------------------------------------------------------- enumeration


async def test_login_answers_the_same_for_unknown_and_known_emails(accounts: Accounts) -> None:
    known = await accounts.register()
    known.password = PASSWORD + "x"
    wrong_password = await accounts.login(known)
    unknown = await accounts.client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": PASSWORD + "x"}
    )
    assert unknown.status_code == wrong_password.status_code == 401
    assert _without_instance(unknown) == _without_instance(wrong_password)


async def test_forgot_password_answers_the_same_for_unknown_and_known_emails(
    accounts: Accounts,
) -> None:
    known = await accounts.register()
    for_known = await accounts.client.post("/v1/auth/password/forgot", json={"email": known.email})
    for_unknown = await accounts.client.post(
        "/v1/auth/password/forgot", json={"email": unique_email()}
    )
    assert for_known.status_code == for_unknown.status_code == 202
    assert for_known.json() == for_unknown.json()
    assert latest_token(accounts.mail_dir, known.email, "password_reset")


async def test_unknown_email_login_spends_a_password_verification(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = await accounts.register()
    hasher: PasswordHasher = accounts.client.app.state.accounts.hasher  # type: ignore[attr-defined]
    calls: list[str] = []
    real_verify, real_dummy = hasher.verify, hasher.dummy_verify

    async def verify(stored_hash: str, password: str) -> Any:
        calls.append("verify")
        return await real_verify(stored_hash, password)

    async def dummy_verify(password: str) -> None:
        calls.append("dummy_verify")
        await real_dummy(password)

    monkeypatch.setattr(hasher, "verify", verify)
    monkeypatch.setattr(hasher, "dummy_verify", dummy_verify)
    await accounts.client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    assert calls == ["dummy_verify"]
    calls.clear()
    known.password = PASSWORD + "x"
    await accounts.login(known)
    assert calls == ["verify"]


# ----------------------------------------------------------------------------- lockout


def _wrong_codes(secret: str, count: int) -> list[str]:
    """Codes that no time step within the accepted drift produces."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + 30 * drift) for drift in (-1, 0, 1)}
    return [c for c in (f"{n:06d}" for n in range(123456, 123466)) if c not in valid][:count]


async def test_account_locks_after_repeated_failures_even_for_the_right_password(
    lockout_client: httpx.AsyncClient, mail_dir: Path
) -> None:
    accounts = Accounts(lockout_client, mail_dir)
    account = await accounts.register()
    right = account.password
    account.password = right + "x"
    for _ in range(3):
        assert (await accounts.login(account)).status_code == 401
    account.password = right
    locked = await accounts.login(account)
    assert assert_problem(locked, 429)["code"] == "account_locked"
    assert 1 <= int(locked.headers["retry-after"]) <= 60


async def test_rotating_forwarding_headers_does_not_lift_a_lockout(
    lockout_client: httpx.AsyncClient, mail_dir: Path
) -> None:
    accounts = Accounts(lockout_client, mail_dir)
    account = await accounts.register()
    wrong = {"email": account.email, "password": PASSWORD + "x"}
    for i in range(3):
        await lockout_client.post(
            "/v1/auth/login", json=wrong, headers={"X-Forwarded-For": f"198.51.100.{i}"}
        )
    for i in range(3):
        response = await lockout_client.post(
            "/v1/auth/login",
            json={"email": account.email, "password": PASSWORD},
            headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"192.0.2.{i}"},
        )
        assert_problem(response, 429)


async def test_mfa_code_guessing_locks_the_second_step(
    lockout_client: httpx.AsyncClient, mail_dir: Path
) -> None:
    accounts = Accounts(lockout_client, mail_dir)
    account = await accounts.user(totp=True)
    mfa_token = (await accounts.login(account)).json()["mfa_token"]
    guesses = [
        await lockout_client.post("/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
        for code in _wrong_codes(account.totp_secret or "", 3)
    ]
    assert [g.status_code for g in guesses] == [401, 401, 401]
    locked = await accounts.login_mfa(account, mfa_token)
    assert assert_problem(locked, 429)["code"] == "account_locked"
    assert "retry-after" in locked.headers


# ----------------------------------------------------------------------------- per-IP policy


async def test_auth_policy_limits_one_ip_despite_spoofed_forwarded_for(
    make_client: ClientFactory, clean_db: None
) -> None:
    async with make_client(ratelimit_policies={"auth": "3/minute"}) as client:
        for i in range(3):
            response = await client.post(
                "/v1/auth/login",
                json={"email": unique_email(), "password": PASSWORD},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            assert response.status_code == 401
        limited = await client.post(
            "/v1/auth/login",
            json={"email": unique_email(), "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.9", "X-Real-IP": "198.51.100.9"},
        )
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1


async def test_auth_policy_counts_each_client_behind_a_trusted_proxy(
    make_client: ClientFactory, clean_db: None
) -> None:
    async with make_client(
        client_ip="10.0.0.5",
        trusted_proxies=["10.0.0.5"],
        ratelimit_policies={"auth": "3/minute"},
    ) as client:

        async def login_from(ip: str) -> int:
            response = await client.post(
                "/v1/auth/login",
                json={"email": unique_email(), "password": PASSWORD},
                headers={"X-Forwarded-For": ip},
            )
            return response.status_code

        first_client = [await login_from("203.0.113.1") for _ in range(4)]
        second_client = await login_from("203.0.113.2")
    assert first_client == [401, 401, 401, 429]
    assert second_client == 401


# ----------------------------------------------------------------------------- audit and logs


async def test_failed_logins_are_audited(accounts: Accounts) -> None:
    known = await accounts.register()
    known.password = PASSWORD + "x"
    assert (await accounts.login(known)).status_code == 401
    unknown = await accounts.client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    assert unknown.status_code == 401
    async with accounts.database.session() as session:
        known_id = (
            await session.execute(select(User.id).where(User.email == known.email))
        ).scalar_one()
        rows = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "auth.login", AuditEvent.outcome == "failure"
                )
            )
        ).scalars()
        failures = {row.target_id: row for row in rows}
    assert set(failures) == {known_id, None}
    for row in failures.values():
        assert row.ip == "127.0.0.1"
        assert row.request_id
        assert PASSWORD not in json.dumps(row.details)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value)]


async def test_secrets_of_the_account_flows_never_reach_the_log(
    make_client: ClientFactory,
    clean_db: None,
    mail_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_password = "a completely different passphrase 9"
    async with make_client(ratelimit_policies=RELAXED_AUTH) as client:
        accounts = Accounts(client, mail_dir)
        account = await accounts.register()
        verify_token = latest_token(mail_dir, account.email, "verify_email")
        await accounts.verify(account)
        await accounts.login(account)
        await accounts.enable_totp(account)
        used_steps = [account.last_step]
        first_tokens = [account.access_token, account.refresh_token]
        mfa_token = (await accounts.login(account)).json()["mfa_token"]
        assert (await accounts.login_mfa(account, mfa_token)).status_code == 200
        used_steps.append(account.last_step)
        await client.post("/v1/auth/password/forgot", json={"email": account.email})
        reset_token = latest_token(mail_dir, account.email, "password_reset")
        response = await client.post(
            "/v1/auth/password/reset", json={"token": reset_token, "new_password": new_password}
        )
        assert response.status_code == 204
    output = capsys.readouterr().out
    assert "audit.auth.mfa" in output
    assert account.totp_secret
    secrets = [
        PASSWORD,
        new_password,
        verify_token,
        reset_token,
        mfa_token,
        account.totp_secret,
        account.access_token,
        account.refresh_token,
        *first_tokens,
        *account.recovery_codes,
    ]
    for secret in secrets:
        assert secret not in output
    # Six-digit codes could occur inside unrelated numbers, so look for them as values.
    totp = pyotp.TOTP(account.totp_secret)
    used_codes = {totp.at(30 * step) for step in used_steps}
    values = {
        leaf
        for line in output.splitlines()
        if line.startswith("{")
        for leaf in _leaves(json.loads(line))
    }
    assert not used_codes & values
