"""Permissions granted per role, and per scope to machine credentials. Routes ask for
permissions, not roles, so an API key or service token carrying scopes passes the same
checks as a person. Anything not granted here is denied.

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
    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"
    REFUNDS_WRITE = "refunds:write"
    API_KEYS_MANAGE = "api_keys:manage"


class Scope(enum.StrEnum):
    """What a machine credential (API key, service token) may be granted. Each names the
    permission it stands for (:data:`SCOPE_PERMISSIONS`); a route accepts machine callers
    only where every permission it requires is one of these."""

    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"
    REFUNDS_WRITE = "refunds:write"
    ORDERS_READ = "orders:read"
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


SCOPE_PERMISSIONS: dict[Scope, Permission] = {
    Scope.PAYMENTS_READ: Permission.PAYMENTS_READ,
    Scope.PAYMENTS_WRITE: Permission.PAYMENTS_WRITE,
    Scope.REFUNDS_WRITE: Permission.REFUNDS_WRITE,
    # A shop's backend reads every order of the shop, as an administrator would.
    Scope.ORDERS_READ: Permission.ORDERS_READ_ANY,
    Scope.WEBHOOKS_MANAGE: Permission.WEBHOOKS_MANAGE,
    Scope.EVENTS_READ: Permission.EVENTS_READ,
}
HOUSE_MERCHANT = "default"
"""The merchant of the deployment's own shop. Only its credentials may hold the scopes
that reach deployment-wide data (the shop's orders, every event, the webhook endpoints,
which receive every merchant's events); another merchant's credentials act on their own
headless payments only (:data:`MERCHANT_SCOPES`)."""
MERCHANT_SCOPES: frozenset[Scope] = frozenset(
    {Scope.PAYMENTS_READ, Scope.PAYMENTS_WRITE, Scope.REFUNDS_WRITE}
)

SCOPE_OF: dict[Permission, Scope] = {p: s for s, p in SCOPE_PERMISSIONS.items()}
"""The scope that grants a permission to a machine credential (absent: none can)."""


def permissions_for(role: Role | None) -> frozenset[Permission]:
    return ROLE_PERMISSIONS.get(role, frozenset()) if role is not None else frozenset()


def permissions_for_scopes(scopes: frozenset[Scope]) -> frozenset[Permission]:
    return frozenset(SCOPE_PERMISSIONS[s] for s in scopes)
