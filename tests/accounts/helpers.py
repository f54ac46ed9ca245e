"""Arrange accounts through the real HTTP API (and, for roles only, the database)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pyotp
from sqlalchemy import update

from tillpay.accounts.models import Role, User
from tillpay.kit.db import Database
from tillpay.notifications.mail import extract_links, read_mailbox

PASSWORD = "correct horse battery staple 42"


def unique_email(tag: str = "user") -> str:
    return f"{tag}.{secrets.token_hex(4)}@shop.example"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def latest_token(mail_dir: Path, to: str, category: str) -> str:
    """The single-use token in the newest mail of ``category`` sent to ``to``."""
    messages = read_mailbox(mail_dir, to=to, category=category)
    assert messages, f"no {category} mail for {to}"
    link = extract_links(messages[-1])[0]
    return parse_qs(urlparse(link).query)["token"][0]


@dataclass
class Account:
    email: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    session_id: str = ""
    user_id: str = ""
    totp_secret: str | None = None
    last_step: int = 0
    recovery_codes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)

    def next_code(self) -> str:
        """A TOTP code for a time step not used yet (the current or the next one)."""
        assert self.totp_secret
        totp = pyotp.TOTP(self.totp_secret)
        now = datetime.now(UTC)
        current = totp.timecode(now)
        step = max(current, self.last_step + 1)
        assert step <= current + 1, "test used more than two codes in one 30 s window"
        self.last_step = step
        return totp.at(now + timedelta(seconds=30 * (step - current)))


class Accounts:
    """Test-side driver of the accounts API for one client and mailbox."""

    def __init__(self, client: httpx.AsyncClient, mail_dir: Path) -> None:
        self.client = client
        self.mail_dir = mail_dir

    @property
    def database(self) -> Database:
        return self.client.app.state.database  # type: ignore[attr-defined]

    async def register(self, email: str | None = None, password: str = PASSWORD) -> Account:
        account = Account(email=email or unique_email(), password=password)
        response = await self.client.post(
            "/v1/auth/register", json={"email": account.email, "password": password}
        )
        assert response.status_code == 202, response.text
        return account

    async def verify(self, account: Account) -> None:
        token = latest_token(self.mail_dir, account.email, "verify_email")
        response = await self.client.post("/v1/auth/verify-email", json={"token": token})
        assert response.status_code == 204, response.text

    async def login(self, account: Account) -> httpx.Response:
        response = await self.client.post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        if response.status_code == 200 and "access_token" in response.json():
            self._take(account, response)
        return response

    async def login_mfa(self, account: Account, mfa_token: str) -> httpx.Response:
        response = await self.client.post(
            "/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": account.next_code()}
        )
        if response.status_code == 200:
            self._take(account, response)
        return response

    def _take(self, account: Account, response: httpx.Response) -> None:
        body = response.json()
        account.access_token = body["access_token"]
        account.refresh_token = body["refresh_token"]
        account.session_id = body["session_id"]
        # The access token's subject is the user's id; reading it here saves every
        # arranged account a GET /v1/me (tests of /v1/me call it themselves).
        account.user_id = jwt.decode(body["access_token"], options={"verify_signature": False})[
            "sub"
        ]

    async def set_role(self, account: Account, role: Role) -> None:
        async with self.database.session() as session, session.begin():
            await session.execute(update(User).where(User.email == account.email).values(role=role))

    async def user(
        self, *, role: Role = Role.CUSTOMER, verified: bool = True, totp: bool = False
    ) -> Account:
        """A signed-in account in the requested state."""
        account = await self.register()
        if verified:
            await self.verify(account)
        if role is not Role.CUSTOMER:
            await self.set_role(account, role)
        response = await self.login(account)
        assert response.status_code == 200, response.text
        if totp:
            await self.enable_totp(account)
        return account

    async def enable_totp(self, account: Account) -> None:
        enroll = await self.client.post("/v1/auth/2fa/enroll", headers=account.headers)
        assert enroll.status_code == 200, enroll.text
        account.totp_secret = enroll.json()["secret"]
        confirm = await self.client.post(
            "/v1/auth/2fa/confirm", json={"code": account.next_code()}, headers=account.headers
        )
        assert confirm.status_code == 200, confirm.text
        account.recovery_codes = confirm.json()["recovery_codes"]

    async def admin(self) -> Account:
        """An administrator with 2FA, signed in with 2FA (a fresh, step-up-ready session)."""
        account = await self.user(role=Role.ADMIN, totp=True)
        first = await self.login(account)
        assert first.json().get("mfa_required") is True, first.text
        second = await self.login_mfa(account, first.json()["mfa_token"])
        assert second.status_code == 200, second.text
        return account
