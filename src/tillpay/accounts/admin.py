"""Administration of users: search, role and status changes, forced sign-out, and the
first administrator (CLI)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import AuthSession, Role, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.sessions import revoke_sessions
from tillpay.accounts.users import check_password_policy, lock_user, normalize_email, user_by_email
from tillpay.audit.service import Actor, record
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, NotFound


async def list_users(
    session: AsyncSession,
    *,
    query: str | None,
    role: Role | None,
    after: str | None,
    limit: int,
) -> list[User]:
    statement = select(User).order_by(User.id).limit(limit + 1)
    if query:
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(
            or_(
                func.lower(User.email).like(f"%{escaped}%", escape="\\"),
                func.lower(func.coalesce(User.display_name, "")).like(f"%{escaped}%", escape="\\"),
            )
        )
    if role is not None:
        statement = statement.where(User.role == role)
    if after:
        statement = statement.where(User.id > after)
    return list((await session.execute(statement)).scalars())


async def user_sessions(
    session: AsyncSession, user_id: str, *, limit: int = 50
) -> list[AuthSession]:
    """A user's live sessions (not revoked, not past their lifetime), most recently used
    first: what an administrator sees before signing them out."""
    result = await session.execute(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.absolute_expires_at > utcnow(),
        )
        .order_by(AuthSession.last_used_at.desc())
        .limit(limit)
    )
    return list(result.scalars())


LOCKOUT_KEYS = {
    "sign-in": "email:{email}",
    "2FA code": "mfa:{id}",
    "re-authentication": "reauth:{id}",
}
"""The lockout keys of an account (``accounts.login``), by what each one locks."""


async def lock_state(rt: AccountsRuntime, user: User) -> dict[str, int]:
    """Which of the account's credential checks are locked now, and for how many seconds."""
    if rt.lockout is None:
        return {}
    locked = {}
    for label, key in LOCKOUT_KEYS.items():
        seconds = await rt.lockout.check(key.format(email=user.email, id=user.id))
        if seconds:
            locked[label] = seconds
    return locked


async def admin_update_user(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    user_id: str,
    *,
    role: Role | None,
    is_active: bool | None,
) -> User:
    """Change a user's role or active flag; their live tokens stop working at once."""
    user = await lock_user(session, user_id)
    if user is None:
        raise NotFound("No such user.")
    if user.id == principal.user_id:
        raise Conflict(
            "Administrators cannot change their own role or status.", code="self_modification"
        )
    changes: dict[str, Any] = {}
    if role is not None and role != user.role:
        changes["role"] = {"from": user.role.value, "to": role.value}
        user.role = role
    if is_active is not None and is_active != user.is_active:
        changes["is_active"] = {"from": user.is_active, "to": is_active}
        user.is_active = is_active
    if changes:
        user.tokens_valid_after = utcnow()
        await revoke_sessions(session, rt, user.id, reason="admin_change")
    await record(
        session,
        principal.actor(),
        "admin.user_updated",
        target_type="user",
        target_id=user.id,
        details=changes,
    )
    return user


async def admin_revoke_sessions(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, user_id: str
) -> int:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    count = await revoke_sessions(session, rt, user.id, reason="admin_revoked")
    await record(
        session,
        principal.actor(),
        "admin.sessions_revoked",
        target_type="user",
        target_id=user.id,
        details={"count": count},
    )
    return count


async def create_admin(
    session: AsyncSession, rt: AccountsRuntime, *, email: str, password: str
) -> User:
    """Used by `tillpay create-admin`: a verified ADMIN account (2FA is enrolled at first login)."""
    address = normalize_email(email)
    check_password_policy(rt, password, address)
    if await user_by_email(session, address) is not None:
        raise Conflict("An account with this email already exists.", code="email_taken")
    user = User(
        email=address,
        password_hash=await rt.hasher.hash(password),
        role=Role.ADMIN,
        email_verified_at=utcnow(),
    )
    session.add(user)
    await session.flush()
    await record(
        session, Actor(id=None, role="CLI"), "admin.created", target_type="user", target_id=user.id
    )
    await emit(
        session,
        "user.registered",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id},
    )
    return user
