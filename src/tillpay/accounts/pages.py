"""Minimal HTML pages behind the links in account emails, so a link can be clicked (in
development the mail is an `.eml` file). Opening a link changes nothing — mail scanners
pre-fetch links — the page's button does, by posting the token back.

The pages carry their own strict CSP (inline style allowed by hash only, forms to self)."""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from tillpay.accounts import passwords, registration
from tillpay.accounts.responses import deliver
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit.db import DbSession
from tillpay.kit.errors import AppError
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit

router = APIRouter(prefix="/account", include_in_schema=False)

_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "input,button{width:100%;padding:.6rem;font-size:1rem;margin:.4rem 0;box-sizing:border-box}"
)
_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _page(body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>tillpay</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    response = HTMLResponse(document, status_code=status)
    response.headers["Content-Security-Policy"] = _CSP
    return response


Token = Annotated[str, Query(min_length=16, max_length=512)]


@router.get("/verify-email")
async def verify_email_page(token: Token) -> HTMLResponse:
    return _page(
        "<h1>Confirm your email address</h1>"
        "<form method=post action='/account/verify-email'>"
        f"<input type=hidden name=token value='{html.escape(token, quote=True)}'>"
        "<button type=submit>Confirm</button></form>"
    )


@router.post("/verify-email")
async def verify_email_submit(
    request: Request, session: DbSession, token: Annotated[str, Form(max_length=512)]
) -> HTMLResponse:
    rt: AccountsRuntime = request.app.state.accounts
    try:
        await registration.verify_email(session, rt, token=token, ip=client_ip(request.scope))
    except AppError as exc:
        return _page(f"<h1>Not confirmed</h1><p>{html.escape(exc.detail)}</p>", status=exc.status)
    return _page("<h1>Email address confirmed</h1><p>You can close this page.</p>")


@router.get("/reset-password")
async def reset_password_page(token: Token) -> HTMLResponse:
    return _page(
        "<h1>Choose a new password</h1>"
        "<form method=post action='/account/reset-password'>"
        f"<input type=hidden name=token value='{html.escape(token, quote=True)}'>"
        "<input type=password name=new_password autocomplete=new-password required "
        "minlength=8 maxlength=128 placeholder='New password'>"
        "<button type=submit>Set password</button></form>"
    )


@router.post("/reset-password")
async def reset_password_submit(
    request: Request,
    session: DbSession,
    token: Annotated[str, Form(max_length=512)],
    new_password: Annotated[str, Form(max_length=1024)],
) -> HTMLResponse:
    rt: AccountsRuntime = request.app.state.accounts
    try:
        outcome = await passwords.reset_password(
            session, rt, token=token, new_password=new_password, ip=client_ip(request.scope)
        )
    except AppError as exc:
        return _page(f"<h1>Not changed</h1><p>{html.escape(exc.detail)}</p>", status=exc.status)
    for message in outcome.mail:
        await rt.mailer.send(message)
    return _page("<h1>Password changed</h1><p>Sign in with your new password.</p>")


@router.get("/forgot-password")
async def forgot_password_page() -> HTMLResponse:
    """Where the account notices' "if this wasn't you" link leads (it carries no token)."""
    return _page(
        "<h1>Reset your password</h1>"
        "<form method=post action='/account/forgot-password'>"
        "<input type=email name=email autocomplete=email required maxlength=320 "
        "placeholder='Email address'>"
        "<button type=submit>Send me a reset link</button></form>"
    )


@router.post("/forgot-password", dependencies=[Depends(RateLimit("auth"))])
async def forgot_password_submit(
    request: Request,
    session: DbSession,
    background: BackgroundTasks,
    email: Annotated[str, Form(min_length=3, max_length=320)],
) -> HTMLResponse:
    rt: AccountsRuntime = request.app.state.accounts
    try:
        outcome = await passwords.forgot_password(
            session, rt, email=email, ip=client_ip(request.scope)
        )
    except AppError as exc:
        return _page(f"<h1>Not sent</h1><p>{html.escape(exc.detail)}</p>", status=exc.status)
    deliver(rt, background, outcome)
    # The same answer whether or not an account has the address.
    return _page(
        "<h1>Check your email</h1><p>If an account uses this address, we have sent it a "
        "link to choose a new password.</p>"
    )
