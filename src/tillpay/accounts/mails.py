"""The account emails. Plain text first; links carry single-use tokens and are never logged."""

from __future__ import annotations

from tillpay.notifications.mail import EmailMessageSpec
from tillpay.settings import Settings


def verify_email(settings: Settings, to: str, link: str) -> EmailMessageSpec:
    hours = settings.email_verification_ttl_seconds // 3600
    return EmailMessageSpec(
        to=to,
        subject="Confirm your email address",
        text=(
            "Confirm this email address for your tillpay account by opening the link below.\n\n"
            f"{link}\n\nThe link works once and expires in {hours} hours. "
            "If you did not ask for this, ignore this message.\n"
        ),
        category="verify_email",
    )


def already_registered(settings: Settings, to: str) -> EmailMessageSpec:
    return EmailMessageSpec(
        to=to,
        subject="Someone tried to register with your email",
        text=(
            "Somebody tried to create a tillpay account with this address, which already has "
            "one. If it was you, sign in or reset your password instead. Otherwise you can "
            f"ignore this message.\n\n{settings.public_base_url}\n"
        ),
        category="already_registered",
    )


def reset_password(settings: Settings, to: str, link: str) -> EmailMessageSpec:
    minutes = settings.password_reset_ttl_seconds // 60
    return EmailMessageSpec(
        to=to,
        subject="Reset your password",
        text=(
            "Open the link below to choose a new password for your tillpay account.\n\n"
            f"{link}\n\nThe link works once and expires in {minutes} minutes. Two-factor "
            "authentication stays on. If you did not ask for this, ignore this message.\n"
        ),
        category="password_reset",
    )


def security_notice(settings: Settings, to: str, what: str) -> EmailMessageSpec:
    return EmailMessageSpec(
        to=to,
        subject="Security notice for your account",
        text=(f"{what}\n\nIf this was not you, reset your password at once and contact support.\n"),
        category="security_notice",
    )
