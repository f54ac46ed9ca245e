"""Two-factor authentication: TOTP enrolment, verification, recovery codes."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.errors import Outcome
from tillpay.accounts.lockout import lockout_check, lockout_failure
from tillpay.accounts.models import AuthSession, RecoveryCode, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.sessions import revoke_sessions
from tillpay.accounts.users import lock_user
from tillpay.audit.service import record
from tillpay.events.service import emit
from tillpay.kit import totp
from tillpay.kit.crypto import SealError, derive_key, seal, unseal
from tillpay.kit.db import utcnow
from tillpay.kit.errors import BadRequest, CommittedRefusal, Conflict, Forbidden
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

TOTP_PURPOSE = "totp-secret"
RECOVERY_PURPOSE = "recovery-code"


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


async def verify_totp(session: AsyncSession, rt: AccountsRuntime, user: User, code: str) -> bool:
    """Check a TOTP code against the (locked) user row and burn its time step."""
    secret = _totp_secret(rt, user)
    if secret is None or user.totp_enabled_at is None:
        return False
    step = totp.verify(secret, code, last_used_step=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


async def use_recovery_code(
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


async def totp_enroll(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> dict[str, str]:
    user = await lock_user(session, principal.user_id)
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


async def pending_enrolment(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> dict[str, str] | None:
    """The enrolment :func:`totp_enroll` started and nobody confirmed yet (the same secret,
    URI and QR code, to show the form again), or None. Reads only."""
    user = await session.get(User, principal.user_id)
    if user is None or user.totp_enabled:
        return None
    secret = _totp_secret(rt, user)
    if secret is None:
        return None
    uri = totp.provisioning_uri(secret, user.email, "tillpay")
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
    user = await lock_user(session, principal.user_id)
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
        raise CommittedRefusal(BadRequest("The code is invalid.", code="invalid_mfa_code"))
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
    # The notice mail follows from the event (customer_mail), with retries.
    await emit(
        session,
        "user.2fa_enabled",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id},
    )
    return Outcome(payload={"recovery_codes": codes})


async def totp_disable(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, password: str, code: str
) -> Outcome:
    user = await lock_user(session, principal.user_id)
    assert user is not None
    if not user.totp_enabled:
        raise Conflict("Two-factor authentication is not enabled.", code="totp_not_enabled")
    lock_key = f"reauth:{user.id}"
    await lockout_check(rt, lock_key)
    password_ok = (await rt.hasher.verify(user.password_hash, password)).ok
    code_ok = await verify_totp(session, rt, user, code) or await use_recovery_code(
        session, rt, user, code
    )
    if not (password_ok and code_ok):
        await lockout_failure(rt, lock_key)
        await record(
            session,
            principal.actor(),
            "auth.totp_disabled",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        raise CommittedRefusal(
            Forbidden("The password or code is incorrect.", code="invalid_credentials")
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
    await emit(
        session,
        "user.2fa_disabled",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id},
    )
    return Outcome()


async def regenerate_recovery_codes(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal, *, code: str
) -> Outcome:
    user = await lock_user(session, principal.user_id)
    assert user is not None
    if not user.totp_enabled:
        raise Conflict("Two-factor authentication is not enabled.", code="totp_not_enabled")
    if not await verify_totp(session, rt, user, code):
        await record(
            session,
            principal.actor(),
            "auth.recovery_codes_regenerated",
            outcome="failure",
            target_type="user",
            target_id=user.id,
        )
        raise CommittedRefusal(BadRequest("The code is invalid.", code="invalid_mfa_code"))
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
