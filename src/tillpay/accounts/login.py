"""Signing in (password, then the second factor) and step-up re-authentication."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.errors import InvalidCredentials, Outcome
from tillpay.accounts.lockout import lockout_check, lockout_failure, lockout_success
from tillpay.accounts.models import AuthSession
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.sessions import IssuedSession, start_session
from tillpay.accounts.totp import use_recovery_code, verify_totp
from tillpay.accounts.users import lock_user, normalize_email, user_by_email
from tillpay.audit.service import Actor, record
from tillpay.kit.db import utcnow
from tillpay.kit.errors import CommittedRefusal, Unauthorized
from tillpay.kit.jwt import MFA_PENDING, InvalidToken
from tillpay.notifications.mail import EmailMessageSpec


async def login(
    session: AsyncSession,
    rt: AccountsRuntime,
    *,
    email: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
) -> IssuedSession | dict[str, Any]:
    """Password login. With 2FA on, answers a short-lived MFA-pending token instead of a
    session. Unknown address, wrong password and deactivated account look identical."""
    address = normalize_email(email)
    lock_key = f"email:{address}"
    await lockout_check(rt, lock_key)
    user = await user_by_email(session, address)
    if user is None:
        await rt.hasher.dummy_verify(password)
        ok = False
    else:
        result = await rt.hasher.verify(user.password_hash, password)
        ok = result.ok and user.is_active
        if ok and result.new_hash:
            user.password_hash = result.new_hash
    actor = Actor(id=user.id if user else None, ip=ip)
    if not ok or user is None:
        await lockout_failure(rt, lock_key)
        await record(
            session,
            actor,
            "auth.login",
            outcome="failure",
            target_type="user",
            target_id=user.id if user else None,
            details={"reason": "invalid_credentials"},
        )
        raise CommittedRefusal(InvalidCredentials())
    await lockout_success(rt, lock_key)
    if user.totp_enabled:
        tokens = await rt.tokens()
        pending = tokens.issue(
            MFA_PENDING,
            subject=user.id,
            ttl=timedelta(seconds=rt.settings.mfa_token_ttl_seconds),
        )
        await record(
            session,
            actor,
            "auth.login",
            outcome="mfa_required",
            target_type="user",
            target_id=user.id,
        )
        return {
            "mfa_required": True,
            "mfa_token": pending.token,
            "expires_in": rt.settings.mfa_token_ttl_seconds,
        }
    issued = await start_session(session, rt, user, mfa=False, ip=ip, user_agent=user_agent)
    await record(session, actor, "auth.login", target_type="session", target_id=issued.session_id)
    return issued


async def login_mfa(
    session: AsyncSession,
    rt: AccountsRuntime,
    *,
    mfa_token: str,
    code: str | None,
    recovery_code: str | None,
    ip: str | None,
    user_agent: str | None,
) -> Outcome:
    """Second login step: a TOTP code (each usable once) or an unused recovery code."""
    try:
        claims = await rt.verify_token(mfa_token, MFA_PENDING)
    except InvalidToken:
        # Nothing was written yet: a plain refusal.
        raise Unauthorized(
            "The login session is invalid or has expired.", code="invalid_mfa_token"
        ) from None
    user_id = str(claims["sub"])
    lock_key = f"mfa:{user_id}"
    await lockout_check(rt, lock_key)
    user = await lock_user(session, user_id)
    if user is None or not user.is_active or not user.totp_enabled:
        raise Unauthorized("The login session is invalid or has expired.", code="invalid_mfa_token")
    ok = False
    method = "totp"
    if code is not None:
        ok = await verify_totp(session, rt, user, code)
    elif recovery_code is not None:
        method = "recovery_code"
        ok = await use_recovery_code(session, rt, user, recovery_code)
    actor = Actor(id=user.id, ip=ip)
    if not ok:
        await lockout_failure(rt, lock_key)
        await record(
            session,
            actor,
            "auth.mfa",
            outcome="failure",
            target_type="user",
            target_id=user.id,
            details={"method": method},
        )
        raise CommittedRefusal(Unauthorized("The code is invalid.", code="invalid_mfa_code"))
    await lockout_success(rt, lock_key)
    issued = await start_session(session, rt, user, mfa=True, ip=ip, user_agent=user_agent)
    await record(
        session,
        actor,
        "auth.mfa",
        target_type="session",
        target_id=issued.session_id,
        details={"method": method},
    )
    mail: list[EmailMessageSpec] = []
    if method == "recovery_code":
        mail.append(
            mails.security_notice(
                rt.settings, user.email, "A recovery code was used to sign in to your account."
            )
        )
    return Outcome(payload=issued, mail=mail)


async def reauthenticate(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    *,
    password: str | None,
    code: str | None,
) -> None:
    """Step-up: prove presence again with the password or a TOTP code."""
    user = await lock_user(session, principal.user_id)
    assert user is not None
    lock_key = f"reauth:{user.id}"
    await lockout_check(rt, lock_key)
    ok = False
    if password is not None:
        ok = (await rt.hasher.verify(user.password_hash, password)).ok
    elif code is not None:
        ok = await verify_totp(session, rt, user, code)
    if not ok:
        await lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.reauthenticate",
            outcome="failure",
            target_type="session",
            target_id=principal.session_id,
        )
        raise CommittedRefusal(
            Unauthorized("The credentials are incorrect.", code="invalid_credentials")
        )
    await lockout_success(rt, lock_key)
    current = await session.get(AuthSession, principal.session_id)
    if current is not None:
        current.auth_time = utcnow()
    await record(
        session,
        principal.actor(),
        "auth.reauthenticate",
        target_type="session",
        target_id=principal.session_id,
    )
