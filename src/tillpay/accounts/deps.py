"""Authentication and authorization dependencies.

Every non-public route depends on :data:`CurrentPrincipal` (directly or through a
permission/role dependency). The access token is read from the ``Authorization: Bearer``
header only — never from the query string or a cookie — then its session and user are
checked on every request, so revocation, deactivation and role changes bite at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tillpay.accounts.errors import StepUpRequired
from tillpay.accounts.models import AuthSession, Role, User
from tillpay.accounts.permissions import SCOPE_OF, SCOPE_PERMISSIONS, Permission, Scope
from tillpay.accounts.principal import AdminTwoFactorRequired, Principal
from tillpay.accounts.runtime import AccountsRuntime, MachineCredentials
from tillpay.kit.db import on_unexpected_failure, utcnow
from tillpay.kit.errors import Forbidden, Unauthorized
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.jwt import ACCESS, InvalidToken
from tillpay.kit.logging import get_logger

log = get_logger("tillpay.authz")


async def get_runtime(request: Request) -> AccountsRuntime:
    runtime: AccountsRuntime = request.app.state.accounts
    return runtime


Runtime = Annotated[AccountsRuntime, Depends(get_runtime)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Send an access token in the Authorization header.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise Unauthorized("Use the Bearer authorization scheme.")
    return token.strip()


# Built once: constructing a statement costs more CPU than the cached compile.
_STATE_QUERY = (
    select(
        AuthSession.user_id,
        AuthSession.revoked_at,
        AuthSession.absolute_expires_at,
        AuthSession.mfa,
        AuthSession.auth_time,
        User.role,
        User.is_active,
        User.email_verified_at,
        User.totp_enabled_at,
        User.tokens_valid_after,
    )
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.id == bindparam("session_id"))
)


async def _load_state(
    session: AsyncSession | AsyncConnection, session_id: str
) -> dict[str, Any] | None:
    """The session's and its user's authorization state, read from the database on every
    request in one primary-key join. Nothing is cached: a cache would have to learn of
    every change, including changes made outside the API (SQL, other services), and the
    read costs one round trip either way."""
    row = (await session.execute(_STATE_QUERY, {"session_id": session_id})).one_or_none()
    if row is None:
        return None
    return {
        "user_id": row.user_id,
        "role": row.role.value,
        "active": row.is_active,
        "email_verified": row.email_verified_at is not None,
        "totp_enabled": row.totp_enabled_at is not None,
        "tokens_valid_after": row.tokens_valid_after.timestamp(),
        "revoked": row.revoked_at is not None,
        "expires_at": row.absolute_expires_at.timestamp(),
        "mfa": row.mfa,
        "auth_time": row.auth_time.timestamp(),
    }


def _rejection(state: dict[str, Any] | None, claims: dict[str, Any]) -> str | None:
    """Why the token's session may not be used (None: it may)."""
    if state is None or state["user_id"] != claims["sub"]:
        return "unknown_session"
    if state["revoked"]:
        return "session_revoked"
    if state["expires_at"] <= utcnow().timestamp():
        return "session_expired"
    if not state["active"]:
        return "user_inactive"
    if state["role"] != claims.get("role"):
        return "role_changed"
    if claims["iat"] < int(state["tokens_valid_after"]):
        return "token_predates_credentials_change"
    return None


async def authenticate(
    rt: AccountsRuntime, token: str, *, ip: str | None, where: str
) -> tuple[Principal, dict[str, Any]]:
    """The principal an access token stands for, and its claims: the token verified, then
    its session and user read from the database. :class:`Unauthorized` for any problem
    (the reason is logged, never told). ``where`` names the caller in the log."""
    try:
        claims = await rt.verify_token(token, ACCESS)
    except InvalidToken as exc:
        log.info("authz.token_rejected", reason=exc.reason, path=where)
        raise Unauthorized(
            "The access token is invalid or expired.", code="invalid_token"
        ) from None
    session_id = claims.get("sid")
    if not isinstance(session_id, str):
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    # A read connection of its own, returned before the route runs: one Core statement,
    # no ORM session, no transaction (no BEGIN/ROLLBACK round trips, no SQLite write lock),
    # and the request's unit of work is neither begun nor committed here.
    async with rt.database.read_connection() as db:
        state = await _load_state(db, session_id)
    reason = _rejection(state, claims)
    if reason is not None or state is None:
        log.info("authz.session_rejected", reason=reason, session_id=session_id)
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    return principal_of_state(rt, state, session_id, ip=ip), claims


def principal_of_state(
    rt: AccountsRuntime, state: dict[str, Any], session_id: str, *, ip: str | None
) -> Principal:
    """The person a checked session state (:func:`_load_state`, accepted by
    :func:`_rejection`) stands for; shared with the console's cookie session."""
    second_factor = not rt.settings.admin_require_2fa or (
        bool(state["totp_enabled"]) and bool(state["mfa"])
    )
    return Principal(
        user_id=state["user_id"],
        role=Role(state["role"]),
        session_id=session_id,
        mfa=bool(state["mfa"]),
        auth_time=datetime.fromtimestamp(state["auth_time"], tz=utcnow().tzinfo),
        email_verified=bool(state["email_verified"]),
        totp_enabled=bool(state["totp_enabled"]),
        ip=ip,
        second_factor=second_factor,
    )


async def session_rejection(
    db: AsyncSession | AsyncConnection, claims: dict[str, Any]
) -> str | None:
    """Why the session behind already-verified ``claims`` may no longer be used (revoked,
    expired, user deactivated, role or credentials changed), or None. For connections
    that outlive a request (the WebSocket re-checks with it)."""
    return _rejection(await _load_state(db, claims["sid"]), claims)


async def _session_principal(request: Request, token: str) -> Principal:
    rt: AccountsRuntime = request.app.state.accounts
    principal, claims = await authenticate(
        rt, token, ip=client_ip(request.scope), where=request.url.path
    )
    session_id = principal.session_id

    async def still_valid(db: AsyncSession) -> Exception | None:
        gone = _rejection(await _load_state(db, session_id), claims)
        if gone is None:
            return None
        log.info("authz.session_rejected", reason=gone, session_id=session_id, during="request")
        return Unauthorized("The access token is invalid or expired.", code="invalid_token")

    on_unexpected_failure(request, still_valid)
    return principal


async def current_caller(request: Request) -> Principal:
    """The verified caller, whatever its credential: a person's access token, an API key or
    a service token (``credentials/``); 401 for any problem (the reason logged only).

    Only routes whose permissions a scope can grant (``require_permission``) or that decide
    per caller kind themselves take this directly; everything else is user-only
    (:func:`current_principal`). Resolved once per request (kept on ``request.state``)."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    token = _bearer(request)
    machines: MachineCredentials | None = getattr(request.app.state, "credentials", None)
    principal = None
    if machines is not None:
        principal = await machines.authenticate(token, request=request)
    if principal is None:
        principal = await _session_principal(request, token)
    request.state.principal = principal
    request.state.user_id = principal.user_id
    return principal


class UserOnly(Forbidden):
    code, title = "user_only", "Signed-in users only"

    def __init__(self) -> None:
        super().__init__(
            "This route is for signed-in people; API keys and service tokens cannot call it."
        )


async def current_principal(request: Request) -> Principal:
    """The verified caller, who must be a person signed in (403 ``user_only`` for a machine
    credential; 401 for any token or session problem, reason logged only)."""
    # Not a sub-dependency: on every authenticated request, one costs more than this call.
    principal = await current_caller(request)
    if principal.is_machine:
        log.info("authz.denied", user_id=principal.user_id, reason="user_only")
        raise UserOnly()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentCaller = Annotated[Principal, Depends(current_caller)]


class require_permission:  # noqa: N801 - used like a function: Depends(require_permission(p))
    """A dependency granting access only with every listed permission: 403 otherwise, with
    ``admin_2fa_required`` when the role holds it but the session lacks 2FA, and
    ``insufficient_scope`` for a machine credential without the scope. Machine credentials
    pass only where a scope grants every listed permission (``SCOPE_OF``). The
    permissions stay readable (``.permissions``, ``.scopes``) for the route inventory and
    the OpenAPI document."""

    def __init__(self, *permissions: Permission, machine: Scope | None = None) -> None:
        self.permissions = frozenset(permissions)
        scopes = [SCOPE_OF.get(p) for p in sorted(self.permissions)]
        #: The scopes a machine credential needs here; None: machines may not call it.
        #: ``machine`` names it where people need a narrower permission than a machine's
        #: scope grants (a customer's own orders; a shop backend's ``orders:read``), the
        #: route's service then deciding per object.
        self.scopes: frozenset[Scope] | None = (
            frozenset({machine})
            if machine is not None
            else frozenset(s for s in scopes if s is not None)
            if all(scopes)
            else None
        )
        self._machine = machine

    async def __call__(self, request: Request, principal: CurrentCaller) -> Principal:
        needed = (
            frozenset({SCOPE_PERMISSIONS[self._machine]})
            if principal.is_machine and self._machine is not None
            else self.permissions
        )
        missing = [p for p in sorted(needed) if p not in principal.permissions]
        if missing:
            withheld = [p for p in missing if p in principal.withheld]
            log.warning(
                "authz.denied",
                user_id=principal.user_id,
                role=principal.role.value if principal.role else principal.kind.value,
                missing=[p.value for p in missing],
                reason="admin_without_2fa" if withheld else "missing_permission",
                path=request.url.path,
            )
            if principal.is_machine:
                if self.scopes is None:
                    raise UserOnly()
                raise Forbidden(
                    "This credential lacks the scope this route requires: "
                    + ", ".join(sorted(self.scopes)),
                    code="insufficient_scope",
                )
            if len(withheld) == len(missing):
                raise AdminTwoFactorRequired()
            raise Forbidden("You do not have permission to do this.")
        return principal


class machine_scope:  # noqa: N801 - used like a function: Depends(machine_scope(s))
    """For routes both people and machines call, deciding per caller in the service (a
    customer's own payment; a shop's headless payment): a machine credential needs every
    listed scope (403 ``insufficient_scope``); a person passes, to be checked by the route's
    own rules. ``.scopes`` stays readable for the route inventory and OpenAPI."""

    def __init__(self, *scopes: Scope) -> None:
        self.scopes = frozenset(scopes)

    async def __call__(self, request: Request, principal: CurrentCaller) -> Principal:
        if principal.is_machine and not self.scopes <= principal.effective_scopes:
            log.warning(
                "authz.denied",
                user_id=principal.user_id,
                missing=sorted(self.scopes - principal.effective_scopes),
                reason="missing_scope",
                path=request.url.path,
            )
            raise Forbidden(
                "This credential lacks the scope this route requires: "
                + ", ".join(sorted(self.scopes)),
                code="insufficient_scope",
            )
        return principal


def _check_recent(request: Request, principal: Principal) -> Principal:
    rt: AccountsRuntime = request.app.state.accounts
    window = timedelta(seconds=rt.settings.step_up_max_age_seconds)
    if utcnow() - principal.auth_time > window:
        raise StepUpRequired()
    return principal


async def require_recent_auth(request: Request, principal: CurrentPrincipal) -> Principal:
    """Step-up: the session authenticated (password or TOTP) within the configured window.
    People only (403 ``user_only`` for a machine credential)."""
    return _check_recent(request, principal)


async def require_recent_auth_of_people(request: Request, principal: CurrentCaller) -> Principal:
    """Step-up for a person; a machine credential passes, having no sign-in to be recent
    (its scopes are the guard). For scoped routes only: it authorizes no one by itself."""
    return principal if principal.is_machine else _check_recent(request, principal)


RecentPrincipal = Annotated[Principal, Depends(require_recent_auth)]
# A person with a recent sign-in, or a machine credential (the route checks its scopes).
RecentCaller = Annotated[Principal, Depends(require_recent_auth_of_people)]


async def require_verified_email(principal: CurrentPrincipal) -> Principal:
    """Unverified users can sign in but not pay."""
    if not principal.email_verified:
        raise Forbidden("Verify your email address first.", code="email_not_verified")
    return principal


VerifiedPrincipal = Annotated[Principal, Depends(require_verified_email)]
