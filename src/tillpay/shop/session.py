"""The shopper's browser session: a signed ``__Host-tillpay_shop`` cookie.

Built like the console's (``web.session``): the cookie carries an :class:`AuthSession` id
opened by the API's own sign-in service, the user id, role, issue and last-activity
times, HMAC-signed under a key of its own (a console cookie is worthless here and vice
versa). Every request re-reads the session and user from the database and applies the
API's rules (``accounts.deps._rejection``), then builds the API's :class:`Principal`.

``SameSite=Lax``, not Strict (the console's): a shopper comes back from the provider's
hosted page (Stripe, Paystack, … on another site) through a redirect chain a Strict cookie
is not sent on, and would land signed out on their order page. Lax sends it on top-level
GET navigations only; every state change here is a POST carrying the session's CSRF token
(checked below, for every route) with a same-origin ``Origin``, and no GET changes state.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, Request

from tillpay.accounts.deps import _load_state, _rejection, principal_of_state
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit import sealed_claims
from tillpay.kit.crypto import derive_key
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.logging import get_logger
from tillpay.web import csrf
from tillpay.web.session import SeeOther
from tillpay.web.templating import queue_cookie

log = get_logger("tillpay.shop.session")

COOKIE: Final = "__Host-tillpay_shop"
LOGIN_PATH: Final = "/shop/login"
_VERSION: Final = "s1"


def _key(request: Request) -> bytes:
    cached: bytes | None = getattr(request.app.state, "shop_session_key", None)
    if cached is None:
        secret = request.app.state.settings.secret_key.get_secret_value().encode()
        cached = request.app.state.shop_session_key = derive_key(secret, "shop-session")
    return cached


def encode(request: Request, claims: dict[str, Any]) -> str:
    return sealed_claims.seal(_key(request), _VERSION, claims)


_REQUIRED: Final = {"sid": str, "sub": str, "role": str, "iat": int, "act": int}


def decode(request: Request, value: str) -> dict[str, Any] | None:
    """The claims of a cookie whose signature holds, else None."""
    return sealed_claims.unseal(_key(request), _VERSION, value, _REQUIRED)


def _set(request: Request, claims: dict[str, Any]) -> None:
    queue_cookie(request, COOKIE, encode(request, claims), max_age=None, samesite="lax")


def start(request: Request, *, session_id: str, user_id: str, role: str, email: str) -> None:
    """Have this response open the shop session (``email`` is for display only)."""
    now = int(time.time())
    _set(request, {"sid": session_id, "sub": user_id, "role": role, "iat": now, "act": now,
                   "em": email[:320]})  # fmt: skip


def clear(request: Request) -> None:
    queue_cookie(request, COOKIE, "", max_age=0, samesite="lax")


def login_redirect(request: Request) -> SeeOther:
    """To sign-in, coming back to this page afterwards (a POST comes back to the cart)."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = "/shop/cart"
    return SeeOther(f"{LOGIN_PATH}?next={quote(target, safe='/')}")


async def optional_shopper(request: Request) -> Principal | None:
    """The signed-in shopper, or None (a stale cookie is cleared). A POST the cookie
    authenticates must carry the session's CSRF token: checked here, for every route."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    value = request.cookies.get(COOKIE)
    claims = decode(request, value) if value else None
    idle = request.app.state.settings.shop_idle_timeout_seconds
    if claims is not None and time.time() - claims["act"] > idle:
        log.info("shop.session_rejected", reason="idle_timeout", session_id=claims["sid"])
        claims = None
    if claims is None:
        if value:
            clear(request)
        return None
    rt: AccountsRuntime = request.app.state.accounts
    async with rt.database.read_connection() as db:
        state = await _load_state(db, claims["sid"])
    reason = _rejection(state, claims)
    if reason is not None or state is None:
        log.info("shop.session_rejected", reason=reason, session_id=claims["sid"])
        clear(request)
        return None
    principal = principal_of_state(rt, state, claims["sid"], ip=client_ip(request.scope))
    _set(request, {**claims, "act": int(time.time())})  # sliding idle timeout
    csrf.bind_session(request, principal.session_id)
    await csrf.require_session_csrf(request)
    request.state.principal = principal
    request.state.user_id = principal.user_id
    request.state.shop_email = str(claims.get("em", ""))
    return principal


async def shopper(request: Request) -> Principal:
    """A signed-in shopper; else a 303 to the shop's sign-in page."""
    principal = await optional_shopper(request)
    if principal is None:
        raise login_redirect(request)
    return principal


Shopper = Annotated[Principal, Depends(shopper)]
MaybeShopper = Annotated[Principal | None, Depends(optional_shopper)]
