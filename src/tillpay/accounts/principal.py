"""Who is calling: the authenticated principal every domain's rules are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tillpay.accounts.models import Role
from tillpay.accounts.permissions import ADMIN_ONLY, Permission, permissions_for
from tillpay.audit.service import Actor
from tillpay.kit.errors import Forbidden


class AdminTwoFactorRequired(Forbidden):
    code, title = "admin_2fa_required", "Two-factor authentication required"

    def __init__(self) -> None:
        super().__init__(
            "Administrators must enable two-factor authentication and sign in with it."
        )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: str
    role: Role
    session_id: str
    mfa: bool
    auth_time: datetime
    email_verified: bool
    totp_enabled: bool
    ip: str | None = None
    # The session satisfies the administrator 2FA rule (or the rule is switched off).
    second_factor: bool = False

    @property
    def permissions(self) -> frozenset[Permission]:
        """Effective permissions: the role's, less admin-only ones without 2FA."""
        granted = permissions_for(self.role)
        return granted if self.second_factor else granted - ADMIN_ONLY

    @property
    def withheld(self) -> frozenset[Permission]:
        """Permissions the role grants but this session may not use until it has 2FA."""
        return permissions_for(self.role) - self.permissions

    def can(self, permission: Permission) -> bool:
        """Whether ``permission`` is effective. Call it where the permission is what grants
        access: a withheld one raises :class:`AdminTwoFactorRequired` (403) instead of
        reading as a plain no, so the caller learns why."""
        if permission in self.permissions:
            return True
        if permission in self.withheld:
            raise AdminTwoFactorRequired()
        return False

    def actor(self) -> Actor:
        return Actor(id=self.user_id, role=self.role.value, ip=self.ip)
