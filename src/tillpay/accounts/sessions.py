"""Sessions: starting one, refresh rotation with reuse detection, logout, listing and
revoking sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.devices import coarse_device, is_new_place
from tillpay.accounts.models import AuthSession, RefreshToken, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.audit.service import Actor, record
from tillpay.events.service import emit
from tillpay.kit.crypto import new_opaque_token, token_digest
from tillpay.kit.db import utcnow
from tillpay.kit.errors import CommittedRefusal, NotFound, Unauthorized
from tillpay.kit.jwt import ACCESS


@dataclass(frozen=True)
class IssuedSession:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str
    refresh_expires_at: datetime


async def _session_ids(
    session: AsyncSession, user_id: str, *, active_only: bool = True
) -> list[str]:
    query = select(AuthSession.id).where(AuthSession.user_id == user_id)
    if active_only:
        query = query.where(AuthSession.revoked_at.is_(None))
    return list((await session.execute(query)).scalars())


async def revoke_sessions(
    session: AsyncSession,
    rt: AccountsRuntime,
    user_id: str,
    *,
    reason: str,
    keep: str | None = None,
) -> int:
    """Revoke the user's sessions (all, or all but ``keep``); effective on the next request."""
    ids = [s for s in await _session_ids(session, user_id) if s != keep]
    if not ids:
        return 0
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    return len(ids)


async def start_session(
    session: AsyncSession,
    rt: AccountsRuntime,
    user: User,
    *,
    mfa: bool,
    ip: str | None,
    user_agent: str | None,
) -> IssuedSession:
    """Open a session (one login) and its first tokens; a sign-in from an IP and device
    none of the user's earlier sessions had also writes ``user.new_login``."""
    now = utcnow()
    agent = (user_agent or "")[:256] or None
    new_place = await is_new_place(session, user.id, ip=ip, user_agent=agent)
    auth_session = AuthSession(
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        auth_time=now,
        absolute_expires_at=now + timedelta(seconds=rt.settings.session_absolute_ttl_seconds),
        mfa=mfa,
        ip=ip,
        user_agent=agent,
    )
    session.add(auth_session)
    await session.flush()
    user.last_login_at = now
    if new_place:
        await emit(
            session,
            "user.new_login",
            subject_type="user",
            subject_id=user.id,
            data={
                "user_id": user.id,
                "session_id": auth_session.id,
                "ip": ip,
                "device": coarse_device(agent),
                "mfa": mfa,
                "at": now.isoformat().replace("+00:00", "Z"),
            },
        )
    return await _issue_tokens(session, rt, user, auth_session)


async def _issue_tokens(
    session: AsyncSession, rt: AccountsRuntime, user: User, auth_session: AuthSession
) -> IssuedSession:
    raw = new_opaque_token()
    session.add(RefreshToken(session_id=auth_session.id, token_hash=token_digest(raw)))
    tokens = await rt.tokens()
    ttl = rt.settings.access_token_ttl_seconds
    issued = tokens.issue(
        ACCESS,
        subject=user.id,
        session_id=auth_session.id,
        ttl=timedelta(seconds=ttl),
        extra={"role": user.role.value},
    )
    return IssuedSession(
        access_token=issued.token,
        expires_in=ttl,
        refresh_token=raw,
        session_id=auth_session.id,
        refresh_expires_at=auth_session.absolute_expires_at,
    )


async def refresh(
    session: AsyncSession, rt: AccountsRuntime, *, refresh_token: str, ip: str | None
) -> IssuedSession:
    """Rotate a refresh token. A token that was already used — including the loser of two
    parallel refreshes — is reuse: the whole session (family) is revoked."""
    now = utcnow()
    digest = token_digest(refresh_token)
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.session_id)
    )
    session_id = result.scalar_one_or_none()
    invalid = Unauthorized("The refresh token is invalid or expired.", code="invalid_refresh_token")
    if session_id is None:
        spent = (
            await session.execute(
                select(RefreshToken.session_id).where(RefreshToken.token_hash == digest)
            )
        ).scalar_one_or_none()
        if spent is not None:
            auth_session = await session.get(AuthSession, spent)
            if auth_session is not None:
                await revoke_sessions_by_id(session, rt, [spent], reason="refresh_reuse")
                await record(
                    session,
                    Actor(id=auth_session.user_id, ip=ip),
                    "auth.refresh_reuse",
                    outcome="failure",
                    target_type="session",
                    target_id=spent,
                )
        raise CommittedRefusal(invalid)
    auth_session = (
        await session.execute(
            select(AuthSession).where(AuthSession.id == session_id).with_for_update()
        )
    ).scalar_one()
    idle_limit = auth_session.last_used_at + timedelta(
        seconds=rt.settings.session_idle_timeout_seconds
    )
    user = await session.get(User, auth_session.user_id)
    if (
        auth_session.revoked_at is not None
        or auth_session.absolute_expires_at <= now
        or idle_limit <= now
        or user is None
        or not user.is_active
    ):
        if auth_session.revoked_at is None:
            await revoke_sessions_by_id(session, rt, [auth_session.id], reason="expired")
        raise CommittedRefusal(invalid)
    auth_session.last_used_at = now
    return await _issue_tokens(session, rt, user, auth_session)


async def revoke_sessions_by_id(
    session: AsyncSession, rt: AccountsRuntime, ids: list[str], *, reason: str
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


async def logout(session: AsyncSession, rt: AccountsRuntime, principal: Principal) -> None:
    await revoke_sessions_by_id(session, rt, [principal.session_id], reason="logout")
    await record(
        session,
        principal.actor(),
        "auth.logout",
        target_type="session",
        target_id=principal.session_id,
    )


async def list_sessions(session: AsyncSession, principal: Principal) -> list[AuthSession]:
    now = utcnow()
    result = await session.execute(
        select(AuthSession)
        .where(
            AuthSession.user_id == principal.user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.absolute_expires_at > now,
        )
        .order_by(AuthSession.created_at.desc())
    )
    return list(result.scalars())


async def revoke_session(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, session_id: str
) -> None:
    target = await session.get(AuthSession, session_id)
    if target is None or target.user_id != principal.user_id or target.revoked_at is not None:
        raise NotFound("No such session.")
    await revoke_sessions_by_id(session, rt, [session_id], reason="user_revoked")
    await record(
        session,
        principal.actor(),
        "auth.session_revoked",
        target_type="session",
        target_id=session_id,
    )


async def revoke_other_sessions(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> int:
    count = await revoke_sessions(
        session, rt, principal.user_id, reason="user_revoked_others", keep=principal.session_id
    )
    await record(
        session,
        principal.actor(),
        "auth.sessions_revoked",
        target_type="user",
        target_id=principal.user_id,
        details={"count": count},
    )
    return count
