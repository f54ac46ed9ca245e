"""The console's sidebar and its page helper.

Add a page to the sidebar by appending a :class:`NavItem` to :data:`NAV` (at import of
your module, or here); an item shows only to people holding its permission. Render a
console page with :func:`page`, which adds the sidebar and the signed-in user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from tillpay.accounts.models import Role
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.web.templating import render


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    permission: Permission | None = None  # None: everyone the console admits


NAV: list[NavItem] = [
    NavItem("Overview", "/console"),
    # Vendors too: the list shows them their own orders' payments only.
    NavItem("Payments", "/console/payments"),
    # The admin areas (console/orders.py … audit.py); vendors see their own slice of the
    # first three.
    NavItem("Orders", "/console/orders", Permission.ORDERS_READ_VENDOR),
    NavItem("Customers", "/console/customers", Permission.USERS_READ),
    NavItem("Vendors", "/console/vendors", Permission.LEDGER_READ_OWN),
    NavItem("Ledger", "/console/ledger", Permission.LEDGER_READ_OWN),
    NavItem("API keys", "/console/api-keys", Permission.API_KEYS_MANAGE),
    NavItem("Audit", "/console/audit", Permission.AUDIT_READ),
    # One's own two-factor state and enrolment (console/security.py): everyone.
    NavItem("Security", "/console/security"),
]
SECURITY_PATH = "/console/security"


def _items(principal: Principal, current: str) -> list[dict[str, Any]]:
    # The overview is the root: it is current on itself only, not on every console page
    # outside the sidebar (the step-up page, say).
    best = max(
        (
            i.path
            for i in NAV
            if current == i.path or (i.path != "/console" and current.startswith(i.path + "/"))
        ),
        key=len,
        default="",
    )
    # An administrator without 2FA is refused every page but their own security page
    # (the 2FA rule), so the sidebar offers only that one.
    locked = principal.role is Role.ADMIN and not principal.second_factor
    return [
        {"label": i.label, "path": i.path, "active": i.path == best}
        for i in NAV
        if (i.path == SECURITY_PATH if locked else True)
        and (i.permission is None or i.permission in principal.permissions)
    ]


def page(
    request: Request,
    principal: Principal,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render a console page (a template extending ``console/layout.html``)."""
    values: dict[str, Any] = {
        "nav": _items(principal, request.url.path),
        "user_email": getattr(request.state, "console_email", ""),
    }
    if context:
        values.update(context)
    return render(request, template, values, status)
