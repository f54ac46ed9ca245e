"""Who is calling: the authenticated principal every domain's rules are checked against."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from tillpay.accounts.models import Role
from tillpay.accounts.permissions import (
    ADMIN_ONLY,
    HOUSE_MERCHANT,
    MERCHANT_SCOPES,
    Permission,
    Scope,
    permissions_for,
    permissions_for_scopes,
)
from tillpay.audit.service import Actor
from tillpay.kit.errors import Forbidden


class AdminTwoFactorRequired(Forbidden):
    code, title = "admin_2fa_required", "Two-factor authentication required"

    def __init__(self) -> None:
        super().__init__(
            "Administrators must enable two-factor authentication and sign in with it."
        )


class CredentialKind(enum.StrEnum):
    """How the caller proved who it is."""

    SESSION = "session"  # a person's access token (a login session)
    API_KEY = "api_key"  # tp_live_… / tp_test_…, created by an administrator
    SERVICE_TOKEN = "service_token"  # noqa: S105 - a kind, not a secret; a short-lived JWT from a configured shop backend


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request: a person (``kind`` SESSION, permissions from
    the role) or a machine credential (permissions from its scopes only, ``role`` None).

    For a machine, ``user_id`` is namespaced so it can never equal a person's id (an API
    key's id ``key_…``; ``service:<sub>`` for a service token), ``merchant`` names the shop
    it acts for (its headless payments are visible to it alone) and ``credential`` names
    the key or issuer, recorded in the audit trail."""

    user_id: str
    role: Role | None
    session_id: str
    mfa: bool
    auth_time: datetime
    email_verified: bool
    totp_enabled: bool
    ip: str | None = None
    # The session satisfies the administrator 2FA rule (or the rule is switched off).
    second_factor: bool = False
    kind: CredentialKind = CredentialKind.SESSION
    scopes: frozenset[Scope] = frozenset()
    merchant: str | None = None
    credential: str | None = None

    @property
    def is_machine(self) -> bool:
        return self.kind is not CredentialKind.SESSION

    @property
    def effective_scopes(self) -> frozenset[Scope]:
        """The scopes that count: all of the house merchant's; another merchant's only
        on its own payments (``MERCHANT_SCOPES``), whatever the credential claims."""
        if self.merchant == HOUSE_MERCHANT:
            return self.scopes
        return self.scopes & MERCHANT_SCOPES

    @property
    def permissions(self) -> frozenset[Permission]:
        """Effective permissions: a machine's scopes; a person's role, less admin-only
        ones without 2FA."""
        if self.is_machine:
            return permissions_for_scopes(self.effective_scopes)
        granted = permissions_for(self.role)
        return granted if self.second_factor else granted - ADMIN_ONLY

    @property
    def withheld(self) -> frozenset[Permission]:
        """Permissions the role grants but this session may not use until it has 2FA."""
        if self.is_machine:
            return frozenset()
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
        if self.role is None:
            return Actor(
                id=self.user_id[:40], role=self.kind.value, ip=self.ip, credential=self.credential
            )
        return Actor(id=self.user_id, role=self.role.value, ip=self.ip)
