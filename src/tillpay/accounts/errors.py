"""Errors and results shared by the accounts services and routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tillpay.kit.errors import Unauthorized
from tillpay.notifications.mail import EmailMessageSpec


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
    """What a service call produced: a payload and the mail to send after the commit.

    A refusal that must keep its writes raises :class:`~tillpay.kit.errors.CommittedRefusal`
    instead (it never sends mail)."""

    payload: Any = None
    mail: list[EmailMessageSpec] = field(default_factory=list)
