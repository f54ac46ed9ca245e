"""Account business rules: registration, verification, login (with 2FA), refresh rotation
with reuse detection, sessions, password flows, TOTP enrolment, profile and admin changes.

Functions take the request's session first and never commit. Mail to send is returned to
the route, which hands it to a background task so it leaves only after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.models import (
    AccountToken,
    AuthSession,
    RecoveryCode,
    RefreshToken,
    Role,
    TokenPurpose,
    User,
)
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.audit.service import Actor, record
from tillpay.kit import totp
from tillpay.kit.crypto import SealError, derive_key, new_opaque_token, seal, token_digest, unseal
from tillpay.kit.db import utcnow
from tillpay.kit.errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unprocessable,
)
from tillpay.kit.jwt import ACCESS, MFA_PENDING, InvalidToken
from tillpay.kit.logging import get_logger
from tillpay.kit.passwords import check_password
from tillpay.notifications.mail import EmailMessageSpec

log = get_logger(__name__)

CONTEXT_WORDS = ("tillpay",)
TOTP_PURPOSE = "totp-secret"
RECOVERY_PURPOSE = "recovery-code"


# ----------------------------------------------------------------------------- results


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Invalid credentials"

    def __init__(self) -> None:
        super().__init__("The email or password is incorrect.")


class StepUpRequired(Unauthorized):
    code, title = "step_up_required", "Recent authentication required"

    def __init__(self) -> None:
        super().__init__("Confirm your password (or a 2FA code) and try again.")


@dataclass
class Outcome:
    """What a service call produced: a payload, mail to send after commit, and — for a
    refusal that must still commit (audit rows) — the error to answer with."""

    payload: Any = None
    mail: list[EmailMessageSpec] = field(default_factory=list)
    error: AppError | None = None


@dataclass(frozen=True)
class IssuedSession:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str
    refresh_expires_at: datetime


# ----------------------------------------------------------------------------- helpers


def normalize_email(raw: str) -> str:
    """Validated, lower-cased address (local parts are treated case-insensitively)."""
    try:
        # No internationalized (SMTPUTF8) local parts: mail is built as plain RFC 5322,
        # which cannot address them, so such an account could never be verified.
        result = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise Unprocessable("Enter a valid email address.", code="invalid_email") from None
    return result.normalized.lower()


def _password_problems(rt: AccountsRuntime, password: str, email: str) -> None:
    problems = check_password(
        password,
        email=email,
        min_length=rt.settings.password_min_length,
        context_words=CONTEXT_WORDS,
    )
    if problems:
        raise Unprocessable(
            "The password does not meet the policy.",
            code="weak_password",
            extra={"errors": [{"field": "password", "message": p} for p in problems]},
        )


async def _user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def _lock_user(session: AsyncSession, user_id: str) -> User | None:
    result = await session.execute(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


def _link(rt: AccountsRuntime, path: str, token: str) -> str:
    return f"{rt.settings.public_base_url}{path}?token={token}"


async def _new_account_token(
    session: AsyncSession, rt: AccountsRuntime, user: User, purpose: TokenPurpose, email: str
) -> str:
    ttl = (
        rt.settings.email_verification_ttl_seconds
        if purpose is TokenPurpose.VERIFY_EMAIL
        else rt.settings.password_reset_ttl_seconds
    )
    # Only the newest link of a purpose works: older unused ones are spent.
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    raw = new_opaque_token()
    session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_digest(raw),
            email=email,
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
    )
    return raw


async def _consume_account_token(
    session: AsyncSession, raw: str, purpose: TokenPurpose
) -> AccountToken:
    """Spend a single-use token atomically; every failure looks the same."""
    now = utcnow()
    result = await session.execute(
        update(AccountToken)
        .where(
            AccountToken.token_hash == token_digest(raw),
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(AccountToken.id)
    )
    token_id = result.scalar_one_or_none()
    if token_id is None:
        raise BadRequest("The link is invalid or has expired.", code="invalid_token")
    token = await session.get(AccountToken, token_id)
    assert token is not None
    return token


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


async def _start_session(
    session: AsyncSession,
    rt: AccountsRuntime,
    user: User,
    *,
    mfa: bool,
    ip: str | None,
    user_agent: str | None,
) -> IssuedSession:
    now = utcnow()
    auth_session = AuthSession(
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        auth_time=now,
        absolute_expires_at=now + timedelta(seconds=rt.settings.session_absolute_ttl_seconds),
        mfa=mfa,
        ip=ip,
        user_agent=(user_agent or "")[:256] or None,
    )
    session.add(auth_session)
    await session.flush()
    user.last_login_at = now
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


def _totp_secret(rt: AccountsRuntime, user: User) -> str | None:
    if user.totp_secret_encrypted is None:
        return None
    try:
        return unseal(
            user.totp_secret_encrypted, secret=rt.secret, purpose=TOTP_PURPOSE, bound_to=user.id
        ).decode()
    except SealError:
        log.error("accounts.totp_secret_unreadable", user_id=user.id)
        return None


def _recovery_hash(rt: AccountsRuntime, code: str) -> str:
    """Deterministic keyed hash, so a code is found by an indexed look-up."""
    return totp.hash_recovery_code(code, pepper=derive_key(rt.secret, RECOVERY_PURPOSE))


async def _verify_totp(session: AsyncSession, rt: AccountsRuntime, user: User, code: str) -> bool:
    """Check a TOTP code against the (locked) user row and burn its time step."""
    secret = _totp_secret(rt, user)
    if secret is None or user.totp_enabled_at is None:
        return False
    step = totp.verify(secret, code, last_used_step=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


async def _use_recovery_code(
    session: AsyncSession, rt: AccountsRuntime, user: User, code: str
) -> bool:
    try:
        digest = _recovery_hash(rt, code)
    except ValueError:
        return False
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == digest,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .returning(RecoveryCode.id)
    )
    return result.scalar_one_or_none() is not None


async def _lockout_check(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is None:
        return
    remaining = await rt.lockout.check(key)
    if remaining:
        raise RateLimited(
            "Too many failed attempts; try again later.",
            code="account_locked",
            headers={"Retry-After": str(max(1, remaining))},
        )


async def _lockout_failure(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is not None:
        await rt.lockout.failure(key)


async def _lockout_success(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is not None:
        await rt.lockout.success(key)


MAIL_POLICY = "account_mail"


async def _mail_budget(rt: AccountsRuntime, address: str) -> None:
    """Spend one of the address's account mails (verification, reset); 429 when none is
    left. Called for every such request *before* looking the address up, so the count,
    the answer and the work done do not depend on whether an account has the address.
    The limiter keys on a keyed hash (``TILLPAY_SECRET_KEY``) of the normalised address,
    never the address itself."""
    if rt.limiter is None:
        return
    decision = await rt.limiter.hit(MAIL_POLICY, "address", address)
    if not decision.allowed:
        log.info("accounts.mail_rate_limited", degraded=decision.degraded)
        raise RateLimited(
            "Too many emails were requested for this address; try again later.",
            code="mail_rate_limited",
            headers={"Retry-After": str(max(decision.retry_after or 1, 1))},
        )


# ----------------------------------------------------------------------------- registration


async def register(
    session: AsyncSession, rt: AccountsRuntime, *, email: str, password: str, ip: str | None
) -> Outcome:
    """Create a customer and mail a verification link. An address that already has an
    account gets a notice instead; the caller sees the same answer either way."""
    address = normalize_email(email)
    _password_problems(rt, password, address)
    await _mail_budget(rt, address)
    # Hash first in both branches so both cost the same.
    password_hash = await rt.hasher.hash(password)
    existing = await _user_by_email(session, address)
    actor = Actor(id=None, ip=ip)
    if existing is not None:
        await record(
            session,
            actor,
            "account.register",
            outcome="duplicate",
            target_type="user",
            target_id=existing.id,
        )
        return Outcome(mail=[mails.already_registered(rt.settings, address)])
    user = User(email=address, password_hash=password_hash, role=Role.CUSTOMER)
    session.add(user)
    await session.flush()
    raw = await _new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, address)
    await record(session, actor, "account.register", target_type="user", target_id=user.id)
    return Outcome(
        mail=[mails.verify_email(rt.settings, address, _link(rt, "/account/verify-email", raw))]
    )


async def verify_email(
    session: AsyncSession, rt: AccountsRuntime, *, token: str, ip: str | None
) -> None:
    record_token = await _consume_account_token(session, token, TokenPurpose.VERIFY_EMAIL)
    user = await _lock_user(session, record_token.user_id)
    if user is None or not user.is_active:
        raise BadRequest("The link is invalid or has expired.", code="invalid_token")
    if record_token.email != user.email:
        # An email change: switch only if nobody took the address meanwhile.
        taken = await _user_by_email(session, record_token.email)
        if taken is not None:
            raise BadRequest("The link is invalid or has expired.", code="invalid_token")
        old = user.email
        user.email = record_token.email
        await record(
            session,
            Actor(id=user.id, ip=ip),
            "account.email_changed",
            target_type="user",
            target_id=user.id,
            details={"old_domain": old.rsplit("@", 1)[-1]},
        )
    user.email_verified_at = utcnow()
    await record(
        session,
        Actor(id=user.id, ip=ip),
        "account.email_verified",
        target_type="user",
        target_id=user.id,
    )


async def resend_verification(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> Outcome:
    user = await session.get(User, principal.user_id)
    if user is None or user.email_verified:
        return Outcome()
    await _mail_budget(rt, user.email)
    raw = await _new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, user.email)
    return Outcome(
        mail=[mails.verify_email(rt.settings, user.email, _link(rt, "/account/verify-email", raw))]
    )


# ----------------------------------------------------------------------------- login


async def login(
    session: AsyncSession,
    rt: AccountsRuntime,
    *,
    email: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
) -> Outcome:
    """Password login. With 2FA on, answers a short-lived MFA-pending token instead of a
    session. Unknown address, wrong password and deactivated account look identical."""
    address = normalize_email(email)
    lock_key = f"email:{address}"
    await _lockout_check(rt, lock_key)
    user = await _user_by_email(session, address)
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
        await _lockout_failure(rt, lock_key)
        await record(
            session,
            actor,
            "auth.login",
            outcome="failure",
            target_type="user",
            target_id=user.id if user else None,
            details={"reason": "invalid_credentials"},
        )
        return Outcome(error=InvalidCredentials())
    await _lockout_success(rt, lock_key)
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
        return Outcome(
            payload={
                "mfa_required": True,
                "mfa_token": pending.token,
                "expires_in": rt.settings.mfa_token_ttl_seconds,
            }
        )
    issued = await _start_session(session, rt, user, mfa=False, ip=ip, user_agent=user_agent)
    await record(session, actor, "auth.login", target_type="session", target_id=issued.session_id)
    return Outcome(payload=issued)


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
        return Outcome(
            error=Unauthorized(
                "The login session is invalid or has expired.", code="invalid_mfa_token"
            )
        )
    user_id = str(claims["sub"])
    lock_key = f"mfa:{user_id}"
    await _lockout_check(rt, lock_key)
    user = await _lock_user(session, user_id)
    if user is None or not user.is_active or not user.totp_enabled:
        return Outcome(
            error=Unauthorized(
                "The login session is invalid or has expired.", code="invalid_mfa_token"
            )
        )
    ok = False
    method = "totp"
    if code is not None:
        ok = await _verify_totp(session, rt, user, code)
    elif recovery_code is not None:
        method = "recovery_code"
        ok = await _use_recovery_code(session, rt, user, recovery_code)
    actor = Actor(id=user.id, ip=ip)
    if not ok:
        await _lockout_failure(rt, lock_key)
        await record(
            session,
            actor,
            "auth.mfa",
            outcome="failure",
            target_type="user",
            target_id=user.id,
            details={"method": method},
        )
        return Outcome(error=Unauthorized("The code is invalid.", code="invalid_mfa_code"))
    await _lockout_success(rt, lock_key)
    issued = await _start_session(session, rt, user, mfa=True, ip=ip, user_agent=user_agent)
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


async def refresh(
    session: AsyncSession, rt: AccountsRuntime, *, refresh_token: str, ip: str | None
) -> Outcome:
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
        return Outcome(error=invalid)
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
        return Outcome(error=invalid)
    auth_session.last_used_at = now
    issued = await _issue_tokens(session, rt, user, auth_session)
    return Outcome(payload=issued)


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


# ----------------------------------------------------------------------------- sessions


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


# ----------------------------------------------------------------------------- passwords


async def forgot_password(
    session: AsyncSession, rt: AccountsRuntime, *, email: str, ip: str | None
) -> Outcome:
    """Mail a reset link when the account exists; the caller always sees the same answer."""
    address = normalize_email(email)
    await _mail_budget(rt, address)
    user = await _user_by_email(session, address)
    if user is None or not user.is_active:
        await record(
            session,
            Actor(id=None, ip=ip),
            "auth.password_reset_requested",
            outcome="unknown_account",
        )
        return Outcome()
    raw = await _new_account_token(session, rt, user, TokenPurpose.RESET_PASSWORD, user.email)
    await record(
        session,
        Actor(id=user.id, ip=ip),
        "auth.password_reset_requested",
        target_type="user",
        target_id=user.id,
    )
    return Outcome(
        mail=[
            mails.reset_password(rt.settings, user.email, _link(rt, "/account/reset-password", raw))
        ]
    )


async def _set_password(
    session: AsyncSession, rt: AccountsRuntime, user: User, new_password: str
) -> None:
    _password_problems(rt, new_password, user.email)
    user.password_hash = await rt.hasher.hash(new_password)


async def reset_password(
    session: AsyncSession, rt: AccountsRuntime, *, token: str, new_password: str, ip: str | None
) -> Outcome:
    """Set a new password from a reset link; every session ends. 2FA still applies at the
    next login: a reset never signs anyone in."""
    record_token = await _consume_account_token(session, token, TokenPurpose.RESET_PASSWORD)
    user = await _lock_user(session, record_token.user_id)
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
    return Outcome(
        mail=[mails.security_notice(rt.settings, user.email, "Your password was reset.")]
    )


async def change_password(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
) -> Outcome:
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    lock_key = f"reauth:{user.id}"
    await _lockout_check(rt, lock_key)
    result = await rt.hasher.verify(user.password_hash, current_password)
    if not result.ok:
        await _lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.password_change",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        return Outcome(
            error=Forbidden("The current password is incorrect.", code="invalid_credentials")
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
    return Outcome(
        mail=[mails.security_notice(rt.settings, user.email, "Your password was changed.")]
    )


async def reauthenticate(
    session: AsyncSession,
    rt: AccountsRuntime,
    principal: Principal,
    *,
    password: str | None,
    code: str | None,
) -> Outcome:
    """Step-up: prove presence again with the password or a TOTP code."""
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    lock_key = f"reauth:{user.id}"
    await _lockout_check(rt, lock_key)
    ok = False
    if password is not None:
        ok = (await rt.hasher.verify(user.password_hash, password)).ok
    elif code is not None:
        ok = await _verify_totp(session, rt, user, code)
    if not ok:
        await _lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.reauthenticate",
            outcome="failure",
            target_type="session",
            target_id=principal.session_id,
        )
        return Outcome(
            error=Unauthorized("The credentials are incorrect.", code="invalid_credentials")
        )
    await _lockout_success(rt, lock_key)
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
    return Outcome()


# ----------------------------------------------------------------------------- 2FA


async def totp_enroll(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> dict[str, str]:
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already enabled.", code="totp_already_enabled")
    secret = totp.new_secret()
    user.totp_secret_encrypted = seal(
        secret.encode(), secret=rt.secret, purpose=TOTP_PURPOSE, bound_to=user.id
    )
    user.totp_last_step = None
    uri = totp.provisioning_uri(secret, user.email, "tillpay")
    await record(
        session,
        principal.actor(),
        "auth.totp_enroll_started",
        target_type="user",
        target_id=user.id,
    )
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg_data_uri(uri)}


async def _replace_recovery_codes(
    session: AsyncSession, rt: AccountsRuntime, user: User
) -> list[str]:
    existing = (
        await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id))
    ).scalars()
    for row in existing:
        await session.delete(row)
    await session.flush()
    codes = totp.new_recovery_codes(10)
    for code in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(rt, code)))
    return codes


async def totp_confirm(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, code: str
) -> Outcome:
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already enabled.", code="totp_already_enabled")
    secret = _totp_secret(rt, user)
    if secret is None:
        raise Conflict("Start enrolment first.", code="totp_not_enrolling")
    step = totp.verify(secret, code, last_used_step=user.totp_last_step)
    if step is None:
        await record(
            session,
            principal.actor(),
            "auth.totp_enabled",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        return Outcome(error=BadRequest("The code is invalid.", code="invalid_mfa_code"))
    user.totp_last_step = step
    user.totp_enabled_at = utcnow()
    codes = await _replace_recovery_codes(session, rt, user)
    await revoke_sessions(session, rt, user.id, reason="totp_enabled", keep=principal.session_id)
    current = await session.get(AuthSession, principal.session_id)
    if current is not None:
        current.mfa = True
        current.auth_time = utcnow()
    await record(
        session, principal.actor(), "auth.totp_enabled", target_type="user", target_id=user.id
    )
    return Outcome(
        payload={"recovery_codes": codes},
        mail=[
            mails.security_notice(
                rt.settings, user.email, "Two-factor authentication was turned on."
            )
        ],
    )


async def totp_disable(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, password: str, code: str
) -> Outcome:
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    if not user.totp_enabled:
        raise Conflict("Two-factor authentication is not enabled.", code="totp_not_enabled")
    lock_key = f"reauth:{user.id}"
    await _lockout_check(rt, lock_key)
    password_ok = (await rt.hasher.verify(user.password_hash, password)).ok
    code_ok = await _verify_totp(session, rt, user, code) or await _use_recovery_code(
        session, rt, user, code
    )
    if not (password_ok and code_ok):
        await _lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.totp_disabled",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        return Outcome(
            error=Forbidden("The password or code is incorrect.", code="invalid_credentials")
        )
    user.totp_enabled_at = None
    user.totp_secret_encrypted = None
    user.totp_last_step = None
    for row in (
        await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id))
    ).scalars():
        await session.delete(row)
    await revoke_sessions(session, rt, user.id, reason="totp_disabled", keep=principal.session_id)
    current = await session.get(AuthSession, principal.session_id)
    if current is not None:
        current.mfa = False
    await record(
        session, principal.actor(), "auth.totp_disabled", target_type="user", target_id=user.id
    )
    return Outcome(
        mail=[
            mails.security_notice(
                rt.settings, user.email, "Two-factor authentication was turned off."
            )
        ]
    )


async def regenerate_recovery_codes(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, code: str
) -> Outcome:
    user = await _lock_user(session, principal.user_id)
    assert user is not None
    if not user.totp_enabled:
        raise Conflict("Two-factor authentication is not enabled.", code="totp_not_enabled")
    if not await _verify_totp(session, rt, user, code):
        await record(
            session,
            principal.actor(),
            "auth.recovery_codes_regenerated",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        return Outcome(error=BadRequest("The code is invalid.", code="invalid_mfa_code"))
    codes = await _replace_recovery_codes(session, rt, user)
    await record(
        session,
        principal.actor(),
        "auth.recovery_codes_regenerated",
        target_type="user",
        target_id=user.id,
    )
    return Outcome(
        payload={"recovery_codes": codes},
        mail=[mails.security_notice(rt.settings, user.email, "New recovery codes were generated.")],
    )


# ----------------------------------------------------------------------------- profile


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def update_profile(
    session: AsyncSession, principal: Principal, *, display_name: str | None
) -> User:
    user = await get_user(session, principal.user_id)
    user.display_name = display_name
    await record(
        session, principal.actor(), "account.profile_updated", target_type="user", target_id=user.id
    )
    return user


async def request_email_change(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, new_email: str
) -> Outcome:
    """Mail a verification link to the new address; the switch happens when it is used.
    The answer is the same whether or not the address is taken."""
    address = normalize_email(new_email)
    user = await get_user(session, principal.user_id)
    if address == user.email:
        raise Conflict("That is already your email address.", code="email_unchanged")
    await _mail_budget(rt, address)
    await record(
        session,
        principal.actor(),
        "account.email_change_requested",
        target_type="user",
        target_id=user.id,
    )
    notice = mails.security_notice(
        rt.settings, user.email, "A change of your account's email address was requested."
    )
    if await _user_by_email(session, address) is not None:
        return Outcome(mail=[notice])
    raw = await _new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, address)
    return Outcome(
        mail=[
            mails.verify_email(rt.settings, address, _link(rt, "/account/verify-email", raw)),
            notice,
        ]
    )


# ----------------------------------------------------------------------------- admin


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
    user = await _lock_user(session, user_id)
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
    _password_problems(rt, password, address)
    if await _user_by_email(session, address) is not None:
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
    return user
