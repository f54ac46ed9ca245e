"""What tillpay tells a user about their own account: the welcome (on the first verified
address), two-factor authentication turned on or off, a changed or reset password, and a
sign-in from an IP address and device not seen before.

Composed from the event's details and the user's current address only: no token, code or
secret ever enters these mails (the verification and reset links, which carry tokens, are
sent by the accounts service itself, never through the outbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import User
from tillpay.events.models import OutboxEvent
from tillpay.notifications.mail import EmailMessageSpec
from tillpay.notifications.templating import render
from tillpay.settings import Settings

#: Account events that call for a mail, and the template (and mail category) of each.
TEMPLATES = {
    "user.email_verified": "welcome",
    "user.2fa_enabled": "2fa_enabled",
    "user.2fa_disabled": "2fa_disabled",
    "user.password_changed": "password_changed",
    "user.new_login": "new_login",
}

SUBJECTS = {
    "welcome": "Welcome to {shop}",
    "2fa_enabled": "Two-factor authentication was turned on",
    "2fa_disabled": "Two-factor authentication was turned off",
    "password_changed": "Your password was changed",
    "new_login": "New sign-in to your account",
}

#: The page (no token in the link) where a user who did not do this starts a reset.
RESET_START_PATH = "/account/forgot-password"


def _when(value: object) -> str:
    """``2026-12-02T14:03:11Z`` → ``2 December 2026, 14:03 UTC`` (as given if unreadable)."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


async def compose(
    session: AsyncSession, settings: Settings, event: OutboxEvent, shop_name: str
) -> EmailMessageSpec | None:
    """The mail to the user ``event`` is about, or None (nothing to say; the user is gone
    or was deactivated)."""
    template = TEMPLATES.get(event.type)
    details: dict[str, Any] = event.payload.get("data", {})
    if template is None or (template == "welcome" and not details.get("first")):
        return None
    user = await session.get(User, event.subject_id)
    if user is None or not user.is_active:
        return None
    subject = SUBJECTS[template].format(shop=shop_name)
    context: dict[str, Any] = {
        "shop_name": shop_name,
        "email": user.email,
        "sign_in_url": settings.public_base_url,
        "reset_url": f"{settings.public_base_url}{RESET_START_PATH}",
        "how": details.get("how"),
    }
    if template == "password_changed" and details.get("how") == "reset":
        subject = "Your password was reset"
    if template == "new_login":
        context |= {
            "when": _when(details.get("at", "")),
            "ip": details.get("ip") or "unknown",
            "device": details.get("device") or "unknown device",
            "mfa": bool(details.get("mfa")),
        }
    text, html = render(template, subject=subject, **context)
    return EmailMessageSpec(
        to=user.email,
        subject=subject,
        text=text,
        html=html,
        category=template,
        tags={"event": event.id},
    )
