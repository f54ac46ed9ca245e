"""``/console/login`` (password, then the 2FA code), ``/console/reauth`` (step-up) and
``/console/logout``: thin routes over ``console.signin`` and the accounts services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import Response

from tillpay.accounts import sessions
from tillpay.accounts.deps import Runtime
from tillpay.accounts.errors import Outcome
from tillpay.accounts.models import Role
from tillpay.accounts.responses import deliver
from tillpay.console import signin
from tillpay.kit.db import DbSession
from tillpay.kit.errors import AppError
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.web import csrf, errors
from tillpay.web import session as web_session
from tillpay.web.session import ConsolePrincipal
from tillpay.web.templating import redirect, render, safe_next

router = APIRouter(prefix="/console", include_in_schema=False)

AUTH_LIMIT = [Depends(RateLimit("auth"))]
AnonCsrf = [Depends(RateLimit("auth")), Depends(csrf.require_anonymous_csrf)]
Next = Annotated[str | None, Query(max_length=2000)]
NextField = Annotated[str, Form(max_length=2000)]
Code = Annotated[str, Form(min_length=6, max_length=32)]


def _login_page(
    request: Request, next_path: str, *, error: str | None = None, email: str = ""
) -> Response:
    return render(
        request,
        "console/login.html",
        {"next": next_path, "error": error, "email": email},
        status=200 if error is None else 401,
    )


def _code_page(
    request: Request, next_path: str, mfa_token: str, error: str | None = None
) -> Response:
    context = {"next": next_path, "mfa_token": mfa_token, "error": error}
    return render(request, "console/login_code.html", context)


def _open(
    request: Request,
    background: BackgroundTasks,
    rt: Runtime,
    started: signin.Started,
    next_path: str,
) -> Response:
    web_session.start(
        request,
        session_id=started.session_id,
        user_id=started.user_id,
        role=started.role,
        email=started.email,
    )
    deliver(rt, background, Outcome(mail=list(started.mail)))
    return redirect(request, next_path)


def _landing(request: Request, started: signin.Started, target: str) -> str:
    """Where a password-only sign-in lands: an administrator without 2FA, who would meet
    403 ``admin_2fa_required`` on the overview, goes to the 2FA set-up page instead (only
    in place of the default; an explicit, already-safe ``next`` is kept)."""
    needs_2fa = request.app.state.settings.admin_require_2fa and started.role == Role.ADMIN.value
    return "/console/security" if needs_2fa and target == "/console" else target


@router.get("/login")
async def login_page(request: Request, next: Next = None) -> Response:
    target = safe_next(next, "/console")
    if await web_session.optional_console_principal(request) is not None:
        return redirect(request, target)
    csrf.bind_anonymous(request)
    return _login_page(request, target)


@router.post("/login", dependencies=AnonCsrf)
async def login_submit(
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    email: Annotated[str, Form(min_length=3, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    next: NextField = "/console",
) -> Response:
    target = safe_next(next, "/console")
    errors.on_error(
        request, lambda exc: _login_page(request, target, error=exc.detail, email=email)
    )
    result = await signin.password_step(
        session,
        rt,
        email=email,
        password=password,
        ip=client_ip(request.scope),
        user_agent=request.headers.get("user-agent"),
    )
    if isinstance(result, signin.CodeNeeded):
        return _code_page(request, target, result.mfa_token)
    return _open(request, background, rt, result, _landing(request, result, target))


@router.post("/login/code", dependencies=AnonCsrf)
async def login_code_submit(
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    mfa_token: Annotated[str, Form(min_length=16, max_length=4096)],
    code: Code,
    next: NextField = "/console",
) -> Response:
    target = safe_next(next, "/console")

    def again(exc: AppError) -> Response:
        if exc.code == "invalid_mfa_token":  # the pending sign-in expired: start over
            return _login_page(request, target, error=exc.detail)
        return _code_page(request, target, mfa_token, error=exc.detail)

    errors.on_error(request, again)
    started = await signin.code_step(
        session,
        rt,
        mfa_token=mfa_token,
        code=code.replace(" ", ""),
        ip=client_ip(request.scope),
        user_agent=request.headers.get("user-agent"),
    )
    return _open(request, background, rt, started, target)


@router.post("/logout")
async def logout(request: Request, session: DbSession, rt: Runtime) -> Response:
    principal = await web_session.optional_console_principal(request)
    if principal is not None:  # its CSRF token was checked with the session
        await sessions.logout(session, rt, principal)
        web_session.clear(request)
    # Without a session there is nothing to clear (a stale cookie was already): another
    # site's form, sent without the SameSite=Strict cookie, must not delete it either.
    return redirect(request, web_session.LOGIN_PATH, notice="signed_out")


def _reauth_page(
    request: Request, principal: ConsolePrincipal, next_path: str, error: str | None = None
) -> Response:
    from tillpay.console.nav import page

    context = {"next": next_path, "error": error, "needs_code": principal.totp_enabled}
    return page(request, principal, "console/reauth.html", context)


@router.get("/reauth")
async def reauth_page(request: Request, principal: ConsolePrincipal, next: Next = None) -> Response:
    return _reauth_page(request, principal, safe_next(next, "/console"))


@router.post("/reauth", dependencies=AUTH_LIMIT)
async def reauth_submit(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    rt: Runtime,
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    code: Annotated[str | None, Form(max_length=32)] = None,
    next: NextField = "/console",
) -> Response:
    target = safe_next(next, "/console")
    errors.on_error(request, lambda exc: _reauth_page(request, principal, target, exc.detail))
    await signin.step_up(
        session, rt, principal, password=password, code=(code or "").replace(" ", "") or None
    )
    return redirect(request, target)
