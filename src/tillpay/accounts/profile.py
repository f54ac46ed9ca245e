"""The signed-in user's own profile and email change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import mails
from tillpay.accounts.errors import Outcome
from tillpay.accounts.links import mail_budget, mail_link, new_account_token
from tillpay.accounts.models import TokenPurpose, User
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.accounts.users import get_user, normalize_email, user_by_email
from tillpay.audit.service import record
from tillpay.kit.errors import Conflict


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
    await mail_budget(rt, address)
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
    if await user_by_email(session, address) is not None:
        return Outcome(mail=[notice])
    raw = await new_account_token(session, rt, user, TokenPurpose.VERIFY_EMAIL, address)
    return Outcome(
        mail=[
            mails.verify_email(rt.settings, address, mail_link(rt, "/account/verify-email", raw)),
            notice,
        ]
    )
