"""Registration and email verification."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.accounts.helpers import PASSWORD, Accounts, latest_token, unique_email
from tests.http.test_errors import assert_problem
from tillpay.notifications.mail import read_mailbox


async def test_register_answers_202_and_mails_a_verification_link(
    client: httpx.AsyncClient, mail_dir: Path
) -> None:
    email = unique_email()
    response = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert "access_token" not in response.text
    assert latest_token(mail_dir, email, "verify_email")


async def test_registered_user_is_a_customer_and_unverified(accounts: Accounts) -> None:
    account = await accounts.user(verified=False)
    me = (await accounts.client.get("/v1/me", headers=account.headers)).json()
    assert me["role"] == "CUSTOMER"
    assert me["email_verified"] is False
    assert me["totp_enabled"] is False


async def test_email_is_normalized(accounts: Accounts, mail_dir: Path) -> None:
    email = unique_email()
    await accounts.register(email.upper())
    assert read_mailbox(mail_dir, to=email, category="verify_email")


async def test_verification_link_verifies_once(accounts: Accounts, mail_dir: Path) -> None:
    account = await accounts.register()
    token = latest_token(mail_dir, account.email, "verify_email")
    first = await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    second = await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    assert first.status_code == 204
    assert_problem(second, 400)
    await accounts.login(account)
    me = (await accounts.client.get("/v1/me", headers=account.headers)).json()
    assert me["email_verified"] is True


async def test_forged_verification_token_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/verify-email", json={"token": "x" * 43})
    body = assert_problem(response, 400)
    assert body["code"] == "invalid_token"


async def test_resend_replaces_the_previous_link(accounts: Accounts, mail_dir: Path) -> None:
    account = await accounts.user(verified=False)
    old = latest_token(mail_dir, account.email, "verify_email")
    response = await accounts.client.post("/v1/auth/verify-email/resend", headers=account.headers)
    assert response.status_code == 202
    new = latest_token(mail_dir, account.email, "verify_email")
    assert new != old
    stale = await accounts.client.post("/v1/auth/verify-email", json={"token": old})
    assert_problem(stale, 400)
    fresh = await accounts.client.post("/v1/auth/verify-email", json={"token": new})
    assert fresh.status_code == 204


async def test_existing_email_gets_the_same_answer_and_a_notice(
    accounts: Accounts, mail_dir: Path
) -> None:
    account = await accounts.register()
    new = await accounts.client.post(
        "/v1/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    again = await accounts.client.post(
        "/v1/auth/register", json={"email": account.email, "password": "another long passphrase 7"}
    )
    assert again.status_code == new.status_code == 202
    assert again.json() == new.json()
    assert read_mailbox(mail_dir, to=account.email, category="already_registered")


async def test_weak_passwords_are_rejected_with_reasons(client: httpx.AsyncClient) -> None:
    email = unique_email("weakling")
    for password in ("short", "password1234", "aaaaaaaaaaaaaaa", email.split("@")[0] + "-2024!!"):
        response = await client.post(
            "/v1/auth/register", json={"email": email, "password": password}
        )
        body = assert_problem(response, 422)
        assert body["code"] == "weak_password"
        assert password not in response.text


async def test_long_passphrase_without_composition_rules_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    for password in ("all lower case words here", "x" * 3 + "q" * 60 + "z" * 65):
        response = await client.post(
            "/v1/auth/register", json={"email": unique_email(), "password": password}
        )
        assert response.status_code == 202, (password, response.text)


async def test_register_refuses_extra_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"email": unique_email(), "password": PASSWORD, "role": "ADMIN"},
    )
    assert_problem(response, 422)


async def test_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register", json={"email": "not-an-email", "password": PASSWORD}
    )
    assert_problem(response, 422)


async def test_the_emailed_link_opens_a_page_whose_button_verifies(
    accounts: Accounts, mail_dir: Path
) -> None:
    account = await accounts.register()
    token = latest_token(mail_dir, account.email, "verify_email")
    page = await accounts.client.get("/account/verify-email", params={"token": token})
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "form-action 'self'" in page.headers["content-security-policy"]
    # Opening the link changes nothing; the button does.
    still = await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    assert still.status_code == 204
    again = await accounts.client.post(
        "/account/verify-email",
        data={"token": token},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 400
    assert "<script" not in again.text
