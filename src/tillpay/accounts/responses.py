"""How accounts results leave over HTTP: the token response (and refresh cookie), and
mail that is sent only after the response, so only after the commit."""

from __future__ import annotations

from typing import Any

from fastapi import BackgroundTasks
from fastapi.responses import JSONResponse

from tillpay.accounts.deps import Runtime
from tillpay.accounts.errors import Outcome
from tillpay.accounts.schemas import TokenPair
from tillpay.accounts.sessions import IssuedSession
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

REFRESH_COOKIE = "__Host-tillpay_refresh"


def deliver(rt: Runtime, background: BackgroundTasks, outcome: Outcome) -> None:
    """Mail leaves after the response (and so after the commit)."""
    for message in outcome.mail:
        background.add_task(send_quietly, rt, message)


async def send_quietly(rt: Runtime, message: Any) -> None:
    try:
        await rt.mailer.send(message)
    except Exception:
        log.exception("mail.delivery_failed", category=message.category)


def token_response(rt: Runtime, issued: IssuedSession) -> JSONResponse:
    body = TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_at=issued.refresh_expires_at,
        session_id=issued.session_id,
    )
    response = JSONResponse(body.model_dump(mode="json"))
    if rt.settings.refresh_cookie_enabled:
        response.set_cookie(
            REFRESH_COOKIE,
            issued.refresh_token,
            max_age=rt.settings.session_absolute_ttl_seconds,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
    return response
