"""Looking users up and the rules every account address and password obeys."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import User
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit.errors import NotFound, Unprocessable
from tillpay.kit.passwords import check_password

CONTEXT_WORDS = ("tillpay",)


def normalize_email(raw: str) -> str:
    """Validated, lower-cased address (local parts are treated case-insensitively)."""
    try:
        # No internationalized (SMTPUTF8) local parts: mail is built as plain RFC 5322,
        # which cannot address them, so such an account could never be verified.
        result = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise Unprocessable("Enter a valid email address.", code="invalid_email") from None
    return result.normalized.lower()


def check_password_policy(rt: AccountsRuntime, password: str, email: str) -> None:
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


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def lock_user(session: AsyncSession, user_id: str) -> User | None:
    result = await session.execute(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user
