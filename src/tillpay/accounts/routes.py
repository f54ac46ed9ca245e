"""HTTP layer of the accounts domain: thin routes over the accounts services."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from tillpay.accounts import admin as user_admin
from tillpay.accounts import login as signin
from tillpay.accounts import passwords, profile, registration, sessions, totp, users
from tillpay.accounts.deps import (
    CurrentPrincipal,
    RecentPrincipal,
    Runtime,
    require_permission,
)
from tillpay.accounts.models import AuthSession, Role
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.accounts.responses import REFRESH_COOKIE, deliver, token_response
from tillpay.accounts.schemas import (
    Accepted,
    AdminUserOut,
    AdminUserPage,
    AdminUserUpdateIn,
    ChangePasswordIn,
    EmailChangeIn,
    ForgotPasswordIn,
    LoginIn,
    LoginMfaIn,
    MfaRequired,
    ProfileUpdateIn,
    ReauthenticateIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    RevokedCount,
    SessionOut,
    TokenIn,
    TokenPair,
    TotpConfirmIn,
    TotpDisableIn,
    TotpEnrollOut,
    UserOut,
)
from tillpay.accounts.sessions import IssuedSession
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import BadRequest
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.logging import get_logger
from tillpay.kit.pagination import decode_cursor, next_cursor

log = get_logger(__name__)

AUTH_LIMIT = [Depends(RateLimit("auth"))]
ACCEPTED = "If the address can be used, we have sent an email with the next step."

auth = APIRouter(prefix="/v1/auth", tags=["auth"])
me = APIRouter(prefix="/v1/me", tags=["profile"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])
wellknown = APIRouter(tags=["auth"])
UserReader = Annotated[Principal, Depends(require_permission(Permission.USERS_READ))]
UserManager = Annotated[Principal, Depends(require_permission(Permission.USERS_MANAGE))]


def _ip(request: Request) -> str:
    return client_ip(request.scope)


# ----------------------------------------------------------------------------- auth


@auth.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=AUTH_LIMIT,
    summary="Create an account",
)
async def register(
    body: RegisterIn, request: Request, session: DbSession, rt: Runtime, background: BackgroundTasks
) -> Accepted:
    """Always answers 202 with the same body: a new address gets a verification link, an
    existing one a notice (no account enumeration)."""
    outcome = await registration.register(
        session, rt, email=body.email, password=body.password, ip=_ip(request)
    )
    deliver(rt, background, outcome)
    return Accepted(detail=ACCEPTED)


@auth.post(
    "/verify-email", status_code=204, dependencies=AUTH_LIMIT, summary="Verify an email address"
)
async def verify_email(
    body: TokenIn, request: Request, session: DbSession, rt: Runtime
) -> Response:
    await registration.verify_email(session, rt, token=body.token, ip=_ip(request))
    return Response(status_code=204)


@auth.post(
    "/verify-email/resend",
    status_code=202,
    response_model=Accepted,
    dependencies=AUTH_LIMIT,
    summary="Send a new verification link",
)
async def resend_verification(
    principal: CurrentPrincipal, session: DbSession, rt: Runtime, background: BackgroundTasks
) -> Accepted:
    deliver(rt, background, await registration.resend_verification(session, rt, principal))
    return Accepted(detail=ACCEPTED)


@auth.post(
    "/login",
    response_model=TokenPair | MfaRequired,
    dependencies=AUTH_LIMIT,
    responses={401: {"description": "Invalid credentials"}, 429: {"description": "Locked out"}},
    summary="Sign in with email and password",
)
async def login(body: LoginIn, request: Request, session: DbSession, rt: Runtime) -> Response:
    result = await signin.login(
        session,
        rt,
        email=body.email,
        password=body.password,
        ip=_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    if isinstance(result, IssuedSession):
        return token_response(rt, result)
    return JSONResponse(MfaRequired(**result).model_dump(mode="json"))


@auth.post(
    "/login/mfa", response_model=TokenPair, dependencies=AUTH_LIMIT, summary="Second sign-in step"
)
async def login_mfa(
    body: LoginMfaIn, request: Request, session: DbSession, rt: Runtime, background: BackgroundTasks
) -> Response:
    outcome = await signin.login_mfa(
        session,
        rt,
        mfa_token=body.mfa_token,
        code=body.code,
        recovery_code=body.recovery_code,
        ip=_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    deliver(rt, background, outcome)
    return token_response(rt, outcome.payload)


@auth.post("/refresh", response_model=TokenPair, summary="Rotate the refresh token")
async def refresh(
    request: Request, session: DbSession, rt: Runtime, body: RefreshIn | None = None
) -> Response:
    """Each refresh token works once. Presenting a used one revokes its whole session."""
    # A browser relying on the cookie may POST without any body.
    token = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise BadRequest("Send the refresh token.", code="missing_refresh_token")
    issued = await sessions.refresh(session, rt, refresh_token=token, ip=_ip(request))
    return token_response(rt, issued)


@auth.post("/logout", status_code=204, summary="End this session")
async def logout(principal: CurrentPrincipal, session: DbSession, rt: Runtime) -> Response:
    await sessions.logout(session, rt, principal)
    response = Response(status_code=204)
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    response.delete_cookie(REFRESH_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@auth.get("/sessions", response_model=list[SessionOut], summary="List active sessions")
async def list_sessions(principal: CurrentPrincipal, session: ReadSession) -> list[SessionOut]:
    rows: list[AuthSession] = await sessions.list_sessions(session, principal)
    return [SessionOut.of(r, current=principal.session_id) for r in rows]


@auth.delete("/sessions/{session_id}", status_code=204, summary="Revoke one session")
async def revoke_session(
    session_id: Annotated[str, Path(max_length=40)],
    principal: CurrentPrincipal,
    session: DbSession,
    rt: Runtime,
) -> Response:
    await sessions.revoke_session(session, rt, principal, session_id)
    return Response(status_code=204)


@auth.post(
    "/sessions/revoke-others", response_model=RevokedCount, summary="Revoke all other sessions"
)
async def revoke_other_sessions(
    principal: CurrentPrincipal, session: DbSession, rt: Runtime
) -> RevokedCount:
    return RevokedCount(revoked=await sessions.revoke_other_sessions(session, rt, principal))


@auth.post(
    "/password/forgot",
    status_code=202,
    response_model=Accepted,
    dependencies=AUTH_LIMIT,
    summary="Request a password reset link",
)
async def forgot_password(
    body: ForgotPasswordIn,
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Accepted:
    deliver(
        rt,
        background,
        await passwords.forgot_password(session, rt, email=body.email, ip=_ip(request)),
    )
    return Accepted(detail=ACCEPTED)


@auth.post(
    "/password/reset",
    status_code=204,
    dependencies=AUTH_LIMIT,
    summary="Set a new password from a reset link",
)
async def reset_password(
    body: ResetPasswordIn,
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    outcome = await passwords.reset_password(
        session, rt, token=body.token, new_password=body.new_password, ip=_ip(request)
    )
    deliver(rt, background, outcome)
    return Response(status_code=204)


@auth.post(
    "/password/change", status_code=204, dependencies=AUTH_LIMIT, summary="Change the password"
)
async def change_password(
    body: ChangePasswordIn,
    principal: CurrentPrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    outcome = await passwords.change_password(
        session,
        rt,
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    deliver(rt, background, outcome)
    return Response(status_code=204)


@auth.post(
    "/reauthenticate", status_code=204, dependencies=AUTH_LIMIT, summary="Step-up authentication"
)
async def reauthenticate(
    body: ReauthenticateIn,
    principal: CurrentPrincipal,
    session: DbSession,
    rt: Runtime,
) -> Response:
    """Confirm the password (or a TOTP code) to unlock sensitive actions for a few minutes."""
    await signin.reauthenticate(session, rt, principal, password=body.password, code=body.code)
    return Response(status_code=204)


@auth.post(
    "/2fa/enroll",
    response_model=TotpEnrollOut,
    dependencies=AUTH_LIMIT,
    summary="Start TOTP enrolment",
)
async def totp_enroll(principal: RecentPrincipal, session: DbSession, rt: Runtime) -> TotpEnrollOut:
    return TotpEnrollOut(**await totp.totp_enroll(session, rt, principal))


@auth.post(
    "/2fa/confirm",
    response_model=RecoveryCodesOut,
    dependencies=AUTH_LIMIT,
    summary="Confirm TOTP enrolment",
)
async def totp_confirm(
    body: TotpConfirmIn,
    principal: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    outcome = await totp.totp_confirm(session, rt, principal, code=body.code)
    deliver(rt, background, outcome)
    return JSONResponse(RecoveryCodesOut(**outcome.payload).model_dump())


@auth.post("/2fa/disable", status_code=204, dependencies=AUTH_LIMIT, summary="Turn TOTP off")
async def totp_disable(
    body: TotpDisableIn,
    principal: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    outcome = await totp.totp_disable(
        session, rt, principal, password=body.password, code=body.code
    )
    deliver(rt, background, outcome)
    return Response(status_code=204)


@auth.post(
    "/2fa/recovery-codes",
    response_model=RecoveryCodesOut,
    dependencies=AUTH_LIMIT,
    summary="Replace the recovery codes",
)
async def regenerate_recovery_codes(
    body: TotpConfirmIn,
    principal: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    outcome = await totp.regenerate_recovery_codes(session, rt, principal, code=body.code)
    deliver(rt, background, outcome)
    return JSONResponse(RecoveryCodesOut(**outcome.payload).model_dump())


@wellknown.get("/.well-known/jwks.json", summary="Public keys that sign access tokens")
async def jwks(rt: Runtime) -> dict[str, Any]:
    ring = await rt.keys.ring()
    return ring.jwks()


# ----------------------------------------------------------------------------- profile


@me.get("", response_model=UserOut, summary="The signed-in user")
async def get_me(principal: CurrentPrincipal, session: ReadSession) -> UserOut:
    return UserOut.model_validate(await users.get_user(session, principal.user_id))


@me.patch("", response_model=UserOut, summary="Update the profile")
async def patch_me(
    body: ProfileUpdateIn, principal: CurrentPrincipal, session: DbSession
) -> UserOut:
    """Only profile fields; role, email, verification and 2FA are not settable here (422)."""
    return UserOut.model_validate(
        await profile.update_profile(session, principal, display_name=body.display_name)
    )


@me.post("/email", status_code=202, response_model=Accepted, summary="Change the email address")
async def change_email(
    body: EmailChangeIn,
    principal: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Accepted:
    """Needs a recent authentication; the new address must be verified before it applies."""
    deliver(
        rt,
        background,
        await profile.request_email_change(session, rt, principal, new_email=body.new_email),
    )
    return Accepted(detail=ACCEPTED)


# ----------------------------------------------------------------------------- admin


@admin.get("/users", response_model=AdminUserPage, summary="Search users")
async def admin_list_users(
    principal: UserReader,
    session: ReadSession,
    q: Annotated[str | None, Query(max_length=100)] = None,
    role: Role | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> AdminUserPage:
    after = decode_cursor(cursor) if cursor else None
    found = await user_admin.list_users(session, query=q, role=role, after=after, limit=limit)
    return AdminUserPage(
        items=[AdminUserOut.model_validate(u) for u in found[:limit]],
        next_cursor=next_cursor(found, limit),
    )


@admin.patch(
    "/users/{user_id}", response_model=AdminUserOut, summary="Change a user's role or status"
)
async def admin_update_user(
    user_id: Annotated[str, Path(max_length=40)],
    body: AdminUserUpdateIn,
    principal: UserManager,
    recent: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
) -> AdminUserOut:
    """Needs a recent authentication. Takes effect on the user's live tokens at once."""
    user = await user_admin.admin_update_user(
        session, rt, principal, user_id, role=body.role, is_active=body.is_active
    )
    return AdminUserOut.model_validate(user)


@admin.post(
    "/users/{user_id}/sessions/revoke",
    response_model=RevokedCount,
    summary="Sign a user out everywhere",
)
async def admin_revoke_sessions(
    user_id: Annotated[str, Path(max_length=40)],
    principal: UserManager,
    recent: RecentPrincipal,
    session: DbSession,
    rt: Runtime,
) -> RevokedCount:
    return RevokedCount(
        revoked=await user_admin.admin_revoke_sessions(session, rt, principal, user_id)
    )
