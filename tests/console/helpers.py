"""Drive the console like a browser: an HTTPS client on the test app with a cookie jar
(``__Host-`` cookies are Secure, so the jar sends them over https only), CSRF tokens
taken from the rendered forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import update

from tests.accounts.helpers import Account
from tillpay.accounts.models import User
from tillpay.kit.db import Database

ORIGIN = "https://localhost"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def hidden_fields(html: str) -> dict[str, str]:
    return {name: value.replace("&amp;", "&") for name, value in _HIDDEN.findall(html)}


@asynccontextmanager
async def browser(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A second client on ``client``'s app, as a browser: https origin, own cookie jar."""
    app = client.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 51234))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as web:
        web.app = app  # type: ignore[attr-defined]
        yield web


async def post_form(
    web: httpx.AsyncClient, path: str, data: dict[str, Any], **headers: str
) -> httpx.Response:
    """A same-origin form post, as a browser sends it."""
    sent = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **headers}
    return await web.post(path, data=data, headers=sent)


async def forget_used_codes(database: Database, account: Account) -> None:
    """Let the account use a TOTP code of a step already used (tests sign in often)."""
    async with database.session() as session, session.begin():
        await session.execute(
            update(User).where(User.email == account.email).values(totp_last_step=None)
        )
    account.last_step = 0


async def sign_in(
    web: httpx.AsyncClient, account: Account, *, next_path: str = "/console"
) -> httpx.Response:
    """Sign in through the console's forms (the code step when the account has 2FA);
    answers the last response (a 303 to ``next_path`` on success)."""
    page = await web.get("/console/login", params={"next": next_path})
    assert page.status_code == 200, page.text
    response = await post_form(
        web,
        "/console/login",
        {
            "csrf_token": csrf_of(page.text),
            "email": account.email,
            "password": account.password,
            "next": next_path,
        },
    )
    if response.status_code == 200 and 'name="mfa_token"' in response.text:
        fields = hidden_fields(response.text)
        response = await post_form(
            web, "/console/login/code", {**fields, "code": account.next_code()}
        )
    return response
