"""Single-use links mailed to users (verification, reset) and the per-address mail budget."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import AccountToken, TokenPurpose, User
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit.crypto import new_opaque_token, token_digest
from tillpay.kit.db import utcnow
from tillpay.kit.errors import BadRequest, RateLimited
from tillpay.kit.logging import get_logger

log = get_logger(__name__)


def mail_link(rt: AccountsRuntime, path: str, token: str) -> str:
    return f"{rt.settings.public_base_url}{path}?token={token}"


async def new_account_token(
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


async def consume_account_token(
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


MAIL_POLICY = "account_mail"


async def mail_budget(rt: AccountsRuntime, address: str) -> None:
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
