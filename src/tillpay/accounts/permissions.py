"""Permissions granted per role. Routes ask for permissions, not roles, so a later API-key
or service-token principal can carry scopes without touching every route. Anything not
granted here is denied.

Permissions only an administrator holds (:data:`ADMIN_ONLY`) are effective only on a
session that satisfies the administrator 2FA rule (TOTP enrolled and used at sign-in,
``TILLPAY_ADMIN_REQUIRE_2FA``): the rule follows the permission wherever it is checked,
not a URL prefix."""

from __future__ import annotations

import enum

from tillpay.accounts.models import Role


class Permission(enum.StrEnum):
    PROFILE_READ = "profile:read"
    PROFILE_WRITE = "profile:write"
    CATALOG_READ = "catalog:read"
    CATALOG_WRITE_OWN = "catalog:write_own"
    CATALOG_WRITE_ANY = "catalog:write_any"
    CART_USE = "cart:use"
    ORDERS_READ_OWN = "orders:read_own"
    ORDERS_READ_VENDOR = "orders:read_vendor"
    ORDERS_READ_ANY = "orders:read_any"
    ORDERS_FULFIL = "orders:fulfil"
    PAYMENTS_CREATE = "payments:create"
    REFUNDS_CREATE = "refunds:create"
    LEDGER_READ_OWN = "ledger:read_own"
    LEDGER_READ_ANY = "ledger:read_any"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    AUDIT_READ = "audit:read"
    PAYMENTS_OPERATE = "payments:operate"
    WEBHOOKS_MANAGE = "webhooks:manage"
    EVENTS_READ = "events:read"


_CUSTOMER = frozenset(
    {
        Permission.PROFILE_READ,
        Permission.PROFILE_WRITE,
        Permission.CATALOG_READ,
        Permission.CART_USE,
        Permission.ORDERS_READ_OWN,
        Permission.PAYMENTS_CREATE,
    }
)
_VENDOR = _CUSTOMER | {
    Permission.CATALOG_WRITE_OWN,
    Permission.ORDERS_READ_VENDOR,
    Permission.LEDGER_READ_OWN,
}
_ADMIN = frozenset(Permission)
ADMIN_ONLY: frozenset[Permission] = _ADMIN - _VENDOR - _CUSTOMER
"""Held by no other role: the powers that need the administrator 2FA rule."""

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CUSTOMER: _CUSTOMER,
    Role.VENDOR: frozenset(_VENDOR),
    Role.ADMIN: _ADMIN,
}


def permissions_for(role: Role) -> frozenset[Permission]:
    return ROLE_PERMISSIONS.get(role, frozenset())
