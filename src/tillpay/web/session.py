"""The console's browser session: a signed ``__Host-tillpay_console`` cookie.

The cookie carries a tillpay :class:`AuthSession` id (opened by the same sign-in services
as the API), the user id, role, the issue time and the last-activity time, signed with
HMAC-SHA256 under a key derived for this purpose. It is ``Secure``, ``HttpOnly``,
``SameSite=Strict``, ``Path=/`` and host-only. Each request:

1. verifies the signature and the idle timeout (``TILLPAY_CONSOLE_IDLE_TIMEOUT_SECONDS``;
   the cookie is re-issued with a fresh activity time, so the timeout slides);
2. reads the session and user from the database and applies the API's own rules
   (``accounts.deps._rejection``: revoked, expired, deactivated, role or credentials
   changed), so every change bites at the next request;
3. builds the :class:`Principal` the API would (``principal_of_state``), 2FA rule included.

Any other method than GET/HEAD must carry the session's CSRF token (``web.csrf``),
checked here for every route. No session: a redirect to ``/console/login?next=…``. Permissions are checked by
:class:`require_console_permission`, the API's own ``require_permission`` rule.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, Request

from tillpay.accounts.deps import (
    _check_recent,
    _load_state,
    _rejection,
    principal_of_state,
    require_permission,
)
from tillpay.accounts.errors import StepUpRequired
from tillpay.accounts.models import Role
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit import sealed_claims
from tillpay.kit.crypto import derive_key
from tillpay.kit.db import on_unexpected_failure
from tillpay.kit.errors import AppError, Forbidden
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.logging import get_logger
from tillpay.web import csrf
from tillpay.web.templating import queue_cookie

log = get_logger("tillpay.web.session")

COOKIE: Final = "__Host-tillpay_console"
LOGIN_PATH: Final = "/console/login"
REAUTH_PATH: Final = "/console/reauth"
_VERSION: Final = "v1"


class SeeOther(AppError):
    """Answer a browser page with a 303 to ``location`` (the web error handler does)."""

    status, code, title = 303, "see_other", "See other"

    def __init__(self, location: str) -> None:
        super().__init__("Redirecting.", headers={"Location": location})
        self.location = location


class ConsoleForbidden(Forbidden):
    code, title = "console_forbidden", "No access to the console"

    def __init__(self) -> None:
        super().__init__("The console is for administrators and vendors.")


def _key(request: Request) -> bytes:
    cached: bytes | None = getattr(request.app.state, "web_session_key", None)
    if cached is None:
        secret = request.app.state.settings.secret_key.get_secret_value().encode()
        cached = request.app.state.web_session_key = derive_key(secret, "console-session")
    return cached


def encode(request: Request, claims: dict[str, Any]) -> str:
    """The cookie value for ``claims``: ``v1.<payload>.<hmac>`` (``kit.sealed_claims``)."""
    return sealed_claims.seal(_key(request), _VERSION, claims)


_REQUIRED: Final = {"sid": str, "sub": str, "role": str, "iat": int, "act": int}


def decode(request: Request, value: str) -> dict[str, Any] | None:
    """The claims of a cookie value whose signature holds, else None."""
    return sealed_claims.unseal(_key(request), _VERSION, value, _REQUIRED)


def start(request: Request, *, session_id: str, user_id: str, role: str, email: str) -> None:
    """Have this request's response open the console session for a fresh AuthSession
    (``email`` is for display only; every decision reads the database)."""
    now = int(time.time())
    claims = {"sid": session_id, "sub": user_id, "role": role, "iat": now, "act": now}
    claims["em"] = email[:320]
    queue_cookie(request, COOKIE, encode(request, claims), max_age=None)


def clear(request: Request) -> None:
    queue_cookie(request, COOKIE, "", max_age=0)


def login_redirect(request: Request) -> SeeOther:
    """To the sign-in page, coming back here afterwards (GET pages only)."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET" or not target.startswith("/console"):
        target = "/console"
    return SeeOther(f"{LOGIN_PATH}?next={quote(target, safe='/')}")


async def _claims_of(request: Request) -> dict[str, Any] | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    claims = decode(request, value)
    if claims is None:
        log.info("web.session_rejected", reason="bad_signature")
        return None
    idle = request.app.state.settings.console_idle_timeout_seconds
    if time.time() - claims["act"] > idle:
        log.info("web.session_rejected", reason="idle_timeout", session_id=claims["sid"])
        return None
    return claims


async def optional_console_principal(request: Request) -> Principal | None:
    """The signed-in console user, or None (a stale cookie is cleared)."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    claims = await _claims_of(request)
    if claims is None:
        if COOKIE in request.cookies:
            clear(request)
        return None
    rt: AccountsRuntime = request.app.state.accounts
    async with rt.database.read_connection() as db:
        state = await _load_state(db, claims["sid"])
    reason = _rejection(state, claims)
    if reason is not None or state is None:
        log.info("web.session_rejected", reason=reason, session_id=claims["sid"])
        clear(request)
        return None
    principal = principal_of_state(rt, state, claims["sid"], ip=client_ip(request.scope))
    _recheck_on_failure(request, claims)
    # Sliding idle timeout: the same claims with a fresh activity time.
    queue_cookie(
        request, COOKIE, encode(request, {**claims, "act": int(time.time())}), max_age=None
    )
    csrf.bind_session(request, principal.session_id)
    # Every state-changing request the cookie authenticates carries the form token:
    # checked here, so no console route can forget it.
    await csrf.require_session_csrf(request)
    request.state.principal = principal
    request.state.user_id = principal.user_id
    request.state.console_email = str(claims.get("em", ""))
    return principal


def _recheck_on_failure(request: Request, claims: dict[str, Any]) -> None:
    # As the API does: a user deleted while the request ran fails its writes (foreign
    # keys); that is a sign-in problem, not a 500.
    async def still_valid(db: Any) -> Exception | None:
        if _rejection(await _load_state(db, claims["sid"]), claims) is None:
            return None
        return login_redirect(request)

    on_unexpected_failure(request, still_valid)


async def console_principal(request: Request) -> Principal:
    """A person signed in to the console, admin or vendor; else to sign-in (or 403)."""
    principal = await optional_console_principal(request)
    if principal is None:
        raise login_redirect(request)
    if principal.role not in (Role.ADMIN, Role.VENDOR):
        raise ConsoleForbidden()
    return principal


ConsolePrincipal = Annotated[Principal, Depends(console_principal)]


class require_console_permission:  # noqa: N801 - used like a function: Depends(...(p))
    """The API's permission rule (``accounts.deps.require_permission``: role permissions,
    admin-only ones withheld without 2FA, ``admin_2fa_required`` then) on the console
    session. People only: the console has no machine credentials."""

    def __init__(self, *permissions: Permission) -> None:
        self._rule = require_permission(*permissions)
        self.permissions = self._rule.permissions

    async def __call__(self, request: Request) -> Principal:
        principal = await console_principal(request)
        return await self._rule(request, principal)


async def require_console_recent(request: Request) -> Principal:
    """Step-up: the API's ``require_recent_auth`` window; else to ``/console/reauth``,
    coming back to this path. Convention: a POST route needing step-up has a GET at the
    same path showing its form, so the person lands back on the form."""
    principal = await console_principal(request)
    try:
        return _check_recent(request, principal)
    except StepUpRequired:
        back = quote(request.url.path, safe="/")
        raise SeeOther(f"{REAUTH_PATH}?next={back}") from None


RecentConsolePrincipal = Annotated[Principal, Depends(require_console_recent)]
