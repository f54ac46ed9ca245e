"""Password flows: forgotten-password links, reset and change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.errors import Outcome
from tillpay.accounts.links import consume_account_token, mail_budget, mail_link, new_account_token
from tillpay.accounts.lockout import lockout_check, lockout_failure
from tillpay.accounts.models import AuthSession, TokenPurpose, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.sessions import revoke_sessions
from tillpay.accounts.users import check_password_policy, lock_user, normalize_email, user_by_email
from tillpay.audit.service import Actor, record
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.kit.errors import BadRequest, CommittedRefusal, Forbidden


async def forgot_password(
    session: AsyncSession, rt: AccountsRuntime, *, email: str, ip: str | None
) -> Outcome:
    """Mail a reset link when the account exists; the caller always sees the same answer."""
    address = normalize_email(email)
    await mail_budget(rt, address)
    user = await user_by_email(session, address)
    if user is None or not user.is_active:
        await record(
            session,
            Actor(id=None, ip=ip),
            "auth.password_reset_requested",
            outcome="unknown_account",
        )
        return Outcome()
    raw = await new_account_token(session, rt, user, TokenPurpose.RESET_PASSWORD, user.email)
    await record(
        session,
        Actor(id=user.id, ip=ip),
        "auth.password_reset_requested",
        target_type="user",
        target_id=user.id,
    )
    return Outcome(
        mail=[
            mails.reset_password(
                rt.settings, user.email, mail_link(rt, "/account/reset-password", raw)
            )
        ]
    )


async def _set_password(
    session: AsyncSession, rt: AccountsRuntime, user: User, new_password: str
) -> None:
    check_password_policy(rt, new_password, user.email)
    user.password_hash = await rt.hasher.hash(new_password)


async def reset_password(
    session: AsyncSession, rt: AccountsRuntime, *, token: str, new_password: str, ip: str | None
) -> Outcome:
    """Set a new password from a reset link; every session ends. 2FA still applies at the
    next login: a reset never signs anyone in."""
    record_token = await consume_account_token(session, token, TokenPurpose.RESET_PASSWORD)
    user = await lock_user(session, record_token.user_id)
    if user is None or not user.is_active:
        raise BadRequest("The link is invalid or has expired.", code="invalid_token")
    await _set_password(session, rt, user, new_password)
    user.tokens_valid_after = utcnow()
    await revoke_sessions(session, rt, user.id, reason="password_reset")
    await record(
        session,
        Actor(id=user.id, ip=ip),
        "auth.password_reset",
        target_type="user",
        target_id=user.id,
    )
    # The notice mail follows from the event (customer_mail), with retries.
    await emit(
        session,
        "user.password_changed",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id, "how": "reset"},
    )
    return Outcome()


async def change_password(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
) -> Outcome:
    user = await lock_user(session, principal.user_id)
    assert user is not None
    lock_key = f"reauth:{user.id}"
    await lockout_check(rt, lock_key)
    result = await rt.hasher.verify(user.password_hash, current_password)
    if not result.ok:
        await lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.password_change",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        raise CommittedRefusal(
            Forbidden("The current password is incorrect.", code="invalid_credentials")
        )
    await _set_password(session, rt, user, new_password)
    await revoke_sessions(
        session, rt, user.id, reason="password_changed", keep=principal.session_id
    )
    current = await session.get(AuthSession, principal.session_id)
    if current is not None:
        current.auth_time = utcnow()
    await record(
        session, principal.actor(), "auth.password_change", target_type="user", target_id=user.id
    )
    await emit(
        session,
        "user.password_changed",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id, "how": "changed"},
    )
    return Outcome()
