"""``/console/security``: one's own two-factor state, and TOTP enrolment in the browser.

Any console user (administrator or vendor, with or without 2FA) may open these pages: an
administrator without 2FA is refused everywhere else (``admin_2fa_required``), and this is
where the refusal page sends them. The routes call the API's own services behind
``POST /v1/auth/2fa/enroll`` and ``/confirm`` (``accounts.totp.totp_enroll`` /
``totp_confirm``), with the same recent-authentication rule (``RecentConsolePrincipal``:
older than the step-up window, ``/console/reauth`` first, then back to the GET at the
same path), the same rate limit and the same audit entries (``auth.totp_enroll_started``,
``auth.totp_enabled``). Confirming marks the current AuthSession as a 2FA session and
revokes the person's other sessions, so this console session carries on with 2FA at its
next request. The recovery codes are shown once, on the page answering the form
(``no-store``, as every console page); new ones replace them through
``totp.regenerate_recovery_codes`` (behind ``POST /v1/auth/2fa/recovery-codes``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import Response

from tillpay.accounts import totp
from tillpay.accounts.deps import Runtime
from tillpay.accounts.principal import Principal
from tillpay.accounts.responses import deliver
from tillpay.console.nav import page
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.web import errors
from tillpay.web.session import ConsolePrincipal, RecentConsolePrincipal
from tillpay.web.templating import redirect

router = APIRouter(prefix="/console", include_in_schema=False)

PATH = "/console/security"
ENROL_PATH = "/console/security/2fa"
CODES_PATH = "/console/security/recovery-codes"
AUTH_LIMIT = [Depends(RateLimit("auth"))]
Code = Annotated[str, Form(max_length=32)]


def _state_page(request: Request, principal: Principal, error: str | None = None) -> Response:
    context = {"error": error, "enrol_path": ENROL_PATH, "codes_path": CODES_PATH}
    return page(request, principal, "console/security.html", context)


def _enrol_page(
    request: Request, principal: Principal, enrolment: dict[str, str], error: str | None = None
) -> Response:
    context: dict[str, Any] = {"enrolment": enrolment, "error": error, "enrol_path": ENROL_PATH}
    return page(request, principal, "console/security_enrol.html", context)


@router.get("/security")
async def security_page(request: Request, principal: ConsolePrincipal) -> Response:
    return _state_page(request, principal)


@router.get("/security/2fa")
async def enrol_page(
    request: Request, principal: RecentConsolePrincipal, session: ReadSession, rt: Runtime
) -> Response:
    """Where the step-up comes back to: the enrolment in progress, else the start button."""
    if principal.totp_enabled:
        return redirect(request, PATH)
    pending = await totp.pending_enrolment(session, rt, principal)
    if pending is None:
        return _state_page(request, principal)
    return _enrol_page(request, principal, pending)


@router.post("/security/2fa", dependencies=AUTH_LIMIT)
async def enrol_start(
    request: Request, principal: RecentConsolePrincipal, session: DbSession, rt: Runtime
) -> Response:
    errors.on_error(request, lambda exc: _state_page(request, principal, exc.detail))
    enrolment = await totp.totp_enroll(session, rt, principal)
    return _enrol_page(request, principal, enrolment)


@router.get("/security/2fa/confirm")
async def confirm_page(request: Request, principal: ConsolePrincipal) -> Response:
    return redirect(request, ENROL_PATH)  # the form lives there (step-up's way back)


@router.post("/security/2fa/confirm", dependencies=AUTH_LIMIT)
async def enrol_confirm(
    request: Request,
    principal: RecentConsolePrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    code: Code = "",
) -> Response:
    pending = await totp.pending_enrolment(session, rt, principal)
    if pending is None:
        return redirect(request, ENROL_PATH if not principal.totp_enabled else PATH)
    errors.on_error(request, lambda exc: _enrol_page(request, principal, pending, exc.detail))
    outcome = await totp.totp_confirm(session, rt, principal, code=code.replace(" ", ""))
    deliver(rt, background, outcome)
    # This session is a 2FA session from now on (totp_confirm); show the page as such.
    now = dataclasses.replace(principal, mfa=True, totp_enabled=True, second_factor=True)
    request.state.principal = now
    context = {"codes": outcome.payload["recovery_codes"], "principal": now, "enabled": True}
    return page(request, now, "console/security_codes.html", context)


@router.get("/security/recovery-codes")
async def codes_page(request: Request, principal: ConsolePrincipal) -> Response:
    return _state_page(request, principal)  # its form is on the security page


@router.post("/security/recovery-codes", dependencies=AUTH_LIMIT)
async def codes_regenerate(
    request: Request,
    principal: RecentConsolePrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    code: Code = "",
) -> Response:
    """New recovery codes (the old ones stop working), through the service behind
    ``POST /v1/auth/2fa/recovery-codes``: a current TOTP code needed, audited, mailed."""
    errors.on_error(request, lambda exc: _state_page(request, principal, exc.detail))
    outcome = await totp.regenerate_recovery_codes(
        session, rt, principal, code=code.replace(" ", "")
    )
    deliver(rt, background, outcome)
    context = {"codes": outcome.payload["recovery_codes"], "enabled": False}
    return page(request, principal, "console/security_codes.html", context)
