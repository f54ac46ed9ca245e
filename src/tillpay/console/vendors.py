"""``/console/vendors``: vendors and what the platform owes each (their ``vendor_payable``
ledger accounts).

Administrators list vendors (``users:read``, as ``GET /v1/admin/users?role=VENDOR``)
with their balances (``ledger:read_any``, as ``GET /v1/admin/ledger/accounts``); a
vendor sees only their own balance (``ledger:read_own``, as ``GET /v1/vendor/balance``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tillpay.accounts import admin as user_admin
from tillpay.accounts.deps import require_permission
from tillpay.accounts.models import Role
from tillpay.accounts.permissions import Permission
from tillpay.console.common import PAGE_SIZE, CursorParam, Text, clean, cursor_key, pager, slice_of
from tillpay.console.nav import page
from tillpay.kit.db import ReadSession
from tillpay.ledger import service as ledger
from tillpay.web.session import ConsolePrincipal

router = APIRouter(prefix="/console", include_in_schema=False)

PAYABLE = "vendor_payable"


async def _payables(session: ReadSession, q: str, cursor: str) -> dict[str, Any]:
    """One page of vendors matching ``q``, each with what the platform owes them."""
    rows = await user_admin.list_users(
        session, query=clean(q), role=Role.VENDOR, after=cursor_key(cursor), limit=PAGE_SIZE
    )
    more = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    owed: dict[str, list[ledger.Balance]] = defaultdict(list)
    if rows:
        found = await ledger.balances(session, owner_ids=[v.id for v in rows])
        for balance in found:
            if balance.kind == PAYABLE and balance.owner_id is not None:
                owed[balance.owner_id].append(balance)
    totals: dict[str, int] = defaultdict(int)
    for balances in owed.values():
        for balance in balances:
            totals[balance.currency] += -balance.balance
    return {
        "vendor_view": False,
        "rows": rows,
        "owed": owed,
        "totals": dict(sorted(totals.items())),
        "pager": pager("/console/vendors", {"q": q}, cursor=cursor, last_key=more),
    }


@router.get("/vendors")
async def vendor_list(
    request: Request,
    principal: ConsolePrincipal,
    session: ReadSession,
    q: Text = "",
    cursor: CursorParam = "",
) -> Response:
    everything = await slice_of(
        request, principal, any_=Permission.LEDGER_READ_ANY, own=Permission.LEDGER_READ_OWN
    )
    if not everything:
        own = await ledger.balances(session, owner_id=principal.user_id)
        context: dict[str, Any] = {
            "vendor_view": True,
            "balances": [b for b in own if b.kind == PAYABLE],
        }
    else:
        await require_permission(Permission.USERS_READ)(request, principal)
        context = await _payables(session, q, cursor)
    context["filters"] = {"q": q}
    return page(request, principal, "console/vendors.html", context)
