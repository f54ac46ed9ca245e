"""Account changes write their ``user.*`` outbox event in the same transaction: once per
action, never for a refused one, and with a payload that carries no secret."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from tests.accounts.helpers import PASSWORD, Account, Accounts, latest_token
from tests.conftest import ClientFactory
from tillpay import event_payloads
from tillpay.accounts.models import User
from tillpay.accounts.schemas import UserOut
from tillpay.events.models import OutboxEvent

NEW_PASSWORD = "a completely different passphrase 9"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


async def user_events(accounts: Accounts, event_type: str | None = None) -> list[OutboxEvent]:
    async with accounts.database.session() as session:
        query = select(OutboxEvent).where(OutboxEvent.type.startswith("user."))
        if event_type is not None:
            query = query.where(OutboxEvent.type == event_type)
        return list((await session.execute(query.order_by(OutboxEvent.created_at))).scalars())


async def user_id_of(accounts: Accounts, email: str) -> str:
    async with accounts.database.session() as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


async def sign_in(
    client: httpx.AsyncClient, account: Account, user_agent: str = FIREFOX_LINUX
) -> httpx.Response:
    response = await client.post(
        "/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    return response


async def test_registration_writes_one_user_registered_event(accounts: Accounts) -> None:
    account = await accounts.register()
    [event] = await user_events(accounts)
    assert event.type == "user.registered"
    assert event.subject_type == "user"
    assert event.subject_id == await user_id_of(accounts, account.email)


async def test_registering_an_address_that_has_an_account_writes_no_event(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await accounts.register(account.email)
    assert len(await user_events(accounts, "user.registered")) == 1


async def test_the_first_verification_writes_user_email_verified_as_first(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await accounts.verify(account)
    [event] = await user_events(accounts, "user.email_verified")
    assert event.payload["data"]["first"] is True
    assert event.payload["data"]["email_changed"] is False


async def test_verifying_a_changed_address_is_not_a_first_verification(
    accounts: Accounts,
) -> None:
    account = await accounts.user()
    new_email = f"new.{account.email}"
    changed = await accounts.client.post(
        "/v1/me/email", json={"new_email": new_email}, headers=account.headers
    )
    assert changed.status_code == 202
    token = latest_token(accounts.mail_dir, new_email, "verify_email")
    assert (
        await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    ).status_code == 204
    later = (await user_events(accounts, "user.email_verified"))[-1]
    assert later.payload["data"] == {
        "user_id": account.user_id,
        "first": False,
        "email_changed": True,
    }


async def test_confirming_2fa_writes_one_2fa_enabled_event(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    [event] = await user_events(accounts, "user.2fa_enabled")
    assert event.subject_id == account.user_id


async def test_a_wrong_2fa_confirmation_code_writes_no_event(accounts: Accounts) -> None:
    account = await accounts.user()
    enrolled = await accounts.client.post("/v1/auth/2fa/enroll", headers=account.headers)
    assert enrolled.status_code == 200
    refused = await accounts.client.post(
        "/v1/auth/2fa/confirm", json={"code": "000000"}, headers=account.headers
    )
    assert refused.status_code == 400
    assert await user_events(accounts, "user.2fa_enabled") == []


async def test_disabling_2fa_writes_one_2fa_disabled_event(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD, "code": account.next_code()},
        headers=account.headers,
    )
    assert response.status_code == 204
    [event] = await user_events(accounts, "user.2fa_disabled")
    assert event.subject_id == account.user_id


async def test_a_refused_2fa_disable_writes_no_event(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD + "x", "code": account.next_code()},
        headers=account.headers,
    )
    assert response.status_code == 403
    assert await user_events(accounts, "user.2fa_disabled") == []


async def test_changing_the_password_writes_one_password_changed_event(
    accounts: Accounts,
) -> None:
    account = await accounts.user()
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204
    [event] = await user_events(accounts, "user.password_changed")
    assert event.payload["data"] == {"user_id": account.user_id, "how": "changed"}


async def test_a_wrong_current_password_writes_no_event(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD + "x", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 403
    assert await user_events(accounts, "user.password_changed") == []


async def test_a_password_reset_writes_password_changed_as_a_reset(accounts: Accounts) -> None:
    account = await accounts.user()
    forgot = await accounts.client.post("/v1/auth/password/forgot", json={"email": account.email})
    assert forgot.status_code == 202
    token = latest_token(accounts.mail_dir, account.email, "password_reset")
    reset = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    [event] = await user_events(accounts, "user.password_changed")
    assert event.payload["data"] == {"user_id": account.user_id, "how": "reset"}


async def test_the_first_sign_in_after_registration_is_not_a_new_login(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await accounts.verify(account)
    await sign_in(accounts.client, account)
    assert await user_events(accounts, "user.new_login") == []


async def test_a_sign_in_from_a_known_ip_and_device_is_not_a_new_login(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    await sign_in(accounts.client, account)
    assert await user_events(accounts, "user.new_login") == []


async def test_a_browser_update_on_a_known_device_is_not_a_new_login(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    await sign_in(accounts.client, account, FIREFOX_LINUX.replace("133.0", "134.0"))
    assert await user_events(accounts, "user.new_login") == []


async def test_a_sign_in_from_a_new_ip_writes_user_new_login(
    accounts: Accounts, make_client: ClientFactory
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    async with make_client(client_ip="203.0.113.7") as elsewhere:
        body = (await sign_in(elsewhere, account)).json()
    [event] = await user_events(accounts, "user.new_login")
    details = event.payload["data"]
    assert details["session_id"] == body["session_id"]
    assert details["ip"] == "203.0.113.7"
    assert details["device"] == "Firefox on Linux"
    assert details["mfa"] is False
    assert event.subject_id == await user_id_of(accounts, account.email)


async def test_a_sign_in_from_a_new_device_at_a_known_ip_writes_user_new_login(
    accounts: Accounts,
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    await sign_in(accounts.client, account, SAFARI_IPHONE)
    [event] = await user_events(accounts, "user.new_login")
    assert event.payload["data"]["device"] == "Safari on iOS"


async def test_a_failed_sign_in_from_a_new_ip_writes_no_event(
    accounts: Accounts, make_client: ClientFactory
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    async with make_client(client_ip="203.0.113.7") as elsewhere:
        refused = await elsewhere.post(
            "/v1/auth/login", json={"email": account.email, "password": PASSWORD + "x"}
        )
    assert refused.status_code == 401
    assert await user_events(accounts, "user.new_login") == []


async def test_a_new_login_with_2fa_is_written_at_the_second_step(
    accounts: Accounts, make_client: ClientFactory
) -> None:
    account = await accounts.user(totp=True)
    async with make_client(client_ip="203.0.113.7") as elsewhere:
        other = Accounts(elsewhere, accounts.mail_dir)
        first = await other.login(account)
        assert first.json()["mfa_required"] is True
        assert await user_events(accounts, "user.new_login") == []
        assert (await other.login_mfa(account, first.json()["mfa_token"])).status_code == 200
    [event] = await user_events(accounts, "user.new_login")
    assert event.payload["data"]["mfa"] is True


async def test_a_user_event_payload_is_the_public_user_without_secrets(
    accounts: Accounts,
) -> None:
    account = await accounts.user(totp=True)
    [event] = await user_events(accounts, "user.2fa_enabled")
    async with accounts.database.session() as session:
        user = await session.get(User, account.user_id)
        assert user is not None
        assert user.totp_secret_encrypted is not None
        body: dict[str, Any] = await event_payloads.payload(session, event)
    obj = body["data"]["object"]
    assert set(obj) == set(UserOut.model_fields)
    assert obj["id"] == account.user_id
    assert obj["totp_enabled"] is True
    text = json.dumps(body)
    for secret in (user.password_hash, account.totp_secret, *account.recovery_codes):
        assert secret
        assert secret not in text
    assert account.access_token not in text
    assert account.refresh_token not in text
