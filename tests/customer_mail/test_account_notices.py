"""Account notice mails through the outbox and a real SMTP server (aiosmtpd): the welcome
after the first verification, 2FA turned on or off, a changed or reset password and a
sign-in from somewhere new; none carries a token, code or secret."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlparse

import httpx

from tests.accounts.helpers import PASSWORD, Account, Accounts, latest_token
from tests.accounts.test_account_events import FIREFOX_LINUX, NEW_PASSWORD, sign_in
from tests.conftest import ClientFactory
from tests.customer_mail.test_customer_mail import parsed, run_mail_jobs, smtp, texts
from tests.unit.test_mail import smtp_server
from tillpay.notifications.mail import extract_links, read_mailbox

RESET_PAGE = "/account/forgot-password"


async def notices(client: httpx.AsyncClient, category: str, to: str) -> list[EmailMessage]:
    """Run the worker's relay and mail jobs against a fresh SMTP server; the messages of
    ``category`` to ``to`` it received."""
    async with smtp_server() as (port, inbox):
        await run_mail_jobs(client, **smtp(port))
    return [m for m in parsed(inbox, category) if m["To"] == to]


def assert_absent(secret: str | None, *texts: str) -> None:
    assert secret
    for text in texts:
        assert secret not in text


def assert_links_to_the_reset_page(message: EmailMessage) -> None:
    paths = [urlparse(link).path for link in extract_links(message)]
    assert RESET_PAGE in paths
    assert all("token" not in link for link in extract_links(message))


async def test_the_first_verification_mails_the_welcome(accounts: Accounts) -> None:
    account = await accounts.register()
    await accounts.verify(account)
    [welcome] = await notices(accounts.client, "welcome", account.email)
    assert welcome["Subject"] == "Welcome to tillpay"
    plain, html = texts(welcome)
    assert f"Your address {account.email} is confirmed" in plain
    assert "two-factor authentication" in html
    verify_token = latest_token(accounts.mail_dir, account.email, "verify_email")
    assert_absent(verify_token, plain, html)


async def test_registration_alone_mails_no_welcome(accounts: Accounts) -> None:
    account = await accounts.register()
    assert await notices(accounts.client, "welcome", account.email) == []
    assert read_mailbox(accounts.mail_dir, to=account.email, category="verify_email")


async def test_verifying_a_changed_address_mails_no_second_welcome(accounts: Accounts) -> None:
    account = await accounts.user()
    assert len(await notices(accounts.client, "welcome", account.email)) == 1
    new_email = f"new.{account.email}"
    changed = await accounts.client.post(
        "/v1/me/email", json={"new_email": new_email}, headers=account.headers
    )
    assert changed.status_code == 202
    token = latest_token(accounts.mail_dir, new_email, "verify_email")
    verified = await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 204
    assert await notices(accounts.client, "welcome", new_email) == []


async def test_turning_2fa_on_mails_a_notice_without_the_secret_or_codes(
    accounts: Accounts,
) -> None:
    account = await accounts.user(totp=True)
    [notice] = await notices(accounts.client, "2fa_enabled", account.email)
    assert notice["Subject"] == "Two-factor authentication was turned on"
    plain, html = texts(notice)
    assert "Your other sessions were signed out" in plain
    for secret in (account.totp_secret, *account.recovery_codes):
        assert_absent(secret, plain, html)
    assert_links_to_the_reset_page(notice)


async def test_turning_2fa_off_mails_a_notice(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.post(
        "/v1/auth/2fa/disable",
        json={"password": PASSWORD, "code": account.next_code()},
        headers=account.headers,
    )
    assert response.status_code == 204
    [notice] = await notices(accounts.client, "2fa_disabled", account.email)
    assert notice["Subject"] == "Two-factor authentication was turned off"
    assert "needs only your password" in texts(notice)[0]
    assert_links_to_the_reset_page(notice)


async def test_a_password_change_mails_a_notice(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204
    [notice] = await notices(accounts.client, "password_changed", account.email)
    assert notice["Subject"] == "Your password was changed"
    plain, html = texts(notice)
    assert f"The password of {account.email} was changed" in plain
    assert_absent(NEW_PASSWORD, plain, html)
    assert_links_to_the_reset_page(notice)


async def test_a_password_reset_mails_a_reset_notice(accounts: Accounts) -> None:
    account = await accounts.user()
    forgot = await accounts.client.post("/v1/auth/password/forgot", json={"email": account.email})
    assert forgot.status_code == 202
    token = latest_token(accounts.mail_dir, account.email, "password_reset")
    reset = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    [notice] = await notices(accounts.client, "password_changed", account.email)
    assert notice["Subject"] == "Your password was reset"
    plain, html = texts(notice)
    assert "Every session was signed out" in plain
    assert_absent(token, plain, html)


async def test_a_refused_password_change_mails_nothing(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.post(
        "/v1/auth/password/change",
        json={"current_password": PASSWORD + "x", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 403
    async with smtp_server() as (port, inbox):
        await run_mail_jobs(accounts.client, **smtp(port))
    assert [m["X-Tillpay-Category"] for m in parsed(inbox)] == ["welcome"]
    assert read_mailbox(accounts.mail_dir, to=account.email, category="security_notice") == []


async def test_a_sign_in_from_somewhere_new_mails_when_ip_and_device(
    accounts: Accounts, make_client: ClientFactory
) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    async with make_client(client_ip="203.0.113.7") as elsewhere:
        await sign_in(elsewhere, account, FIREFOX_LINUX)
    [notice] = await notices(accounts.client, "new_login", account.email)
    assert notice["Subject"] == "New sign-in to your account"
    plain, html = texts(notice)
    assert "IP address: 203.0.113.7" in plain
    assert "Device:     Firefox on Linux" in plain
    assert " UTC" in plain.split("When:", 1)[1].splitlines()[0]
    assert "If this wasn't you" in html
    assert_links_to_the_reset_page(notice)


async def test_a_known_sign_in_mails_nothing(accounts: Accounts) -> None:
    account = await accounts.register()
    await sign_in(accounts.client, account)
    await sign_in(accounts.client, account)
    assert await notices(accounts.client, "new_login", account.email) == []


async def test_the_reset_page_of_the_notices_mails_a_reset_link(
    accounts: Accounts, mail_dir: Path
) -> None:
    account: Account = await accounts.user()
    page = await accounts.client.get(RESET_PAGE)
    assert page.status_code == 200
    assert "form-action 'self'" in page.headers["content-security-policy"]
    sent = await accounts.client.post(RESET_PAGE, data={"email": account.email})
    assert sent.status_code == 200
    assert "Check your email" in sent.text
    token = latest_token(mail_dir, account.email, "password_reset")
    reset = await accounts.client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
