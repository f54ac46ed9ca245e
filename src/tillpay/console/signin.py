"""Console sign-in on top of the accounts services (``accounts.login``): the same
lockout, rate limits, audit entries and 2FA rule as the API; only the carrier differs
(a cookie session instead of tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import login as signin
from tillpay.accounts.models import AuthSession, Role, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.sessions import IssuedSession, revoke_sessions_by_id
from tillpay.kit.errors import CommittedRefusal
from tillpay.notifications.mail import EmailMessageSpec
from tillpay.web.session import ConsoleForbidden


@dataclass(frozen=True)
class Started:
    """A console session to open: the AuthSession the sign-in started, and who it is."""

    session_id: str
    user_id: str
    role: str
    email: str
    mail: tuple[EmailMessageSpec, ...] = ()


@dataclass(frozen=True)
class CodeNeeded:
    """The password was right and the account has 2FA: ask for the code."""

    mfa_token: str


async def _started(
    session: AsyncSession,
    rt: AccountsRuntime,
    issued: IssuedSession,
    mail: tuple[EmailMessageSpec, ...],
) -> Started:
    row = (
        await session.execute(
            select(User.id, User.role, User.email)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == issued.session_id)
        )
    ).one()
    if row.role not in (Role.ADMIN, Role.VENDOR):
        # The session must not outlive the refusal (its tokens were never handed out).
        await revoke_sessions_by_id(session, rt, [issued.session_id], reason="console_refused")
        raise CommittedRefusal(ConsoleForbidden())
    return Started(issued.session_id, row.id, row.role.value, row.email, mail)


async def password_step(
    session: AsyncSession,
    rt: AccountsRuntime,
    *,
    email: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
) -> Started | CodeNeeded:
    result = await signin.login(
        session, rt, email=email, password=password, ip=ip, user_agent=user_agent
    )
    if isinstance(result, IssuedSession):
        return await _started(session, rt, result, ())
    return CodeNeeded(mfa_token=str(result["mfa_token"]))


async def code_step(
    session: AsyncSession,
    rt: AccountsRuntime,
    *,
    mfa_token: str,
    code: str,
    ip: str | None,
    user_agent: str | None,
) -> Started:
    """A 6-digit TOTP code, or else a recovery code."""
    totp = code if code.isdigit() and len(code) == 6 else None
    outcome = await signin.login_mfa(
        session,
        rt,
        mfa_token=mfa_token,
        code=totp,
        recovery_code=None if totp else code,
        ip=ip,
        user_agent=user_agent,
    )
    return await _started(session, rt, outcome.payload, tuple(outcome.mail))


async def step_up(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    *,
    password: str,
    code: str | None,
) -> None:
    """Re-authentication: the password, and with 2FA on the TOTP code too (each through
    ``accounts.login.reauthenticate``, so each failure is counted and audited).

    A wrong code after a right password must not leave the session stepped up (the
    refusal commits): its auth time is put back first."""
    await signin.reauthenticate(session, rt, principal, password=password, code=None)
    if not principal.totp_enabled:
        return
    try:
        await signin.reauthenticate(session, rt, principal, password=None, code=code or "")
    except CommittedRefusal:
        current = await session.get(AuthSession, principal.session_id)
        if current is not None:
            current.auth_time = principal.auth_time
        raise
