"""Registration and email verification."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.errors import Outcome
from tillpay.accounts.links import consume_account_token, mail_budget, mail_link, new_account_token
from tillpay.accounts.models import Role, TokenPurpose, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.users import check_password_policy, lock_user, normalize_email, user_by_email
from tillpay.audit.service import Actor, record
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.kit.errors import BadRequest


async def register(
    session: AsyncSession, rt: AccountsRuntime, *, email: str, password: str, ip: str | None
) -> Outcome:
    """Create a customer, write ``user.registered`` and mail a verification link (by the
    caller after the commit, never through the outbox: it carries a token). An address
    that already has an account gets a notice instead; the caller sees the same answer
    either way."""
    address = normalize_email(email)
    check_password_policy(rt, password, address)
    await mail_budget(rt, address)
    # Hash first in both branches so both cost the same.
    password_hash = await rt.hasher.hash(password)
    existing = await user_by_email(session, address)
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
    raw = await new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, address)
    await record(session, actor, "account.register", target_type="user", target_id=user.id)
    await emit(
        session,
        "user.registered",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id},
    )
    return Outcome(
        mail=[mails.verify_email(rt.settings, address, mail_link(rt, "/account/verify-email", raw))]
    )


async def verify_email(
    session: AsyncSession, rt: AccountsRuntime, *, token: str, ip: str | None
) -> None:
    record_token = await consume_account_token(session, token, TokenPurpose.VERIFY_EMAIL)
    user = await lock_user(session, record_token.user_id)
    if user is None or not user.is_active:
        raise BadRequest("The link is invalid or has expired.", code="invalid_token")
    first = user.email_verified_at is None
    email_changed = record_token.email != user.email
    if email_changed:
        # An email change: switch only if nobody took the address meanwhile.
        taken = await user_by_email(session, record_token.email)
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
    # The welcome mail goes out on the first verification (customer_mail), not at
    # registration: then it would arrive with the verification link, and go to whoever's
    # address was typed in.
    await emit(
        session,
        "user.email_verified",
        subject_type="user",
        subject_id=user.id,
        data={"user_id": user.id, "first": first, "email_changed": email_changed},
    )


async def resend_verification(
    session: AsyncSession, rt: AccountsRuntime, principal: Principal
) -> Outcome:
    user = await session.get(User, principal.user_id)
    if user is None or user.email_verified:
        return Outcome()
    await mail_budget(rt, user.email)
    raw = await new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, user.email)
    return Outcome(
        mail=[
            mails.verify_email(rt.settings, user.email, mail_link(rt, "/account/verify-email", raw))
        ]
    )
