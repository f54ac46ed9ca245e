"""``/console/ledger``: the double-entry ledger's accounts, balances and entries.

Administrators (``ledger:read_any``, as ``GET /v1/admin/ledger/accounts``) see every
account and, per currency, the sum of debit balances against the sum of credit balances:
the ledger is balanced when they cancel out, and every transaction is checked too
(``ledger.unbalanced_transactions``). A vendor (``ledger:read_own``, as
``GET /v1/vendor/balance``) sees only their own accounts; another account is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from tillpay.accounts.permissions import Permission
from tillpay.console.common import PAGE_SIZE, CursorParam, cursor_key, pager, slice_of
from tillpay.console.nav import page
from tillpay.kit.db import ReadSession
from tillpay.kit.errors import NotFound
from tillpay.ledger import service as ledger
from tillpay.web.session import ConsolePrincipal

router = APIRouter(prefix="/console", include_in_schema=False)

AccountId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


@dataclass
class CurrencyTotals:
    """One currency's trial balance: debit balances, credit balances (as a positive
    number), and whether they cancel out."""

    currency: str
    debits: int = 0
    credits: int = 0
    accounts: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def difference(self) -> int:
        return self.debits - self.credits

    @property
    def balanced(self) -> bool:
        return self.difference == 0


def trial_balance(balances: list[ledger.Balance]) -> list[CurrencyTotals]:
    totals: dict[str, CurrencyTotals] = {}
    for b in balances:
        row = totals.setdefault(b.currency, CurrencyTotals(b.currency))
        row.accounts += 1
        if b.balance > 0:
            row.debits += b.balance
        else:
            row.credits += -b.balance
        row.kinds[b.kind] = row.kinds.get(b.kind, 0) + b.balance
    return [totals[c] for c in sorted(totals)]


@router.get("/ledger")
async def ledger_overview(
    request: Request, principal: ConsolePrincipal, session: ReadSession
) -> Response:
    everything = await slice_of(
        request, principal, any_=Permission.LEDGER_READ_ANY, own=Permission.LEDGER_READ_OWN
    )
    if everything:
        balances = await ledger.balances(session)
        unbalanced = await ledger.unbalanced_transactions(session)
    else:
        balances = await ledger.balances(session, owner_id=principal.user_id)
        unbalanced = []
    totals = trial_balance(balances)
    context = {
        "vendor_view": not everything,
        "balances": balances,
        "totals": totals,
        "balanced": all(t.balanced for t in totals) and not unbalanced,
        "unbalanced": unbalanced[:20],
        "unbalanced_count": len(unbalanced),
    }
    return page(request, principal, "console/ledger.html", context)


@router.get("/ledger/accounts/{account_id}")
async def ledger_account(
    request: Request,
    principal: ConsolePrincipal,
    session: ReadSession,
    account_id: AccountId,
    cursor: CursorParam = "",
) -> Response:
    everything = await slice_of(
        request, principal, any_=Permission.LEDGER_READ_ANY, own=Permission.LEDGER_READ_OWN
    )
    account = await ledger.get_account(session, account_id)
    if account is None or (not everything and account.owner_id != principal.user_id):
        raise NotFound("No such ledger account.")
    entries = await ledger.account_entries(
        session, account.id, before=cursor_key(cursor), limit=PAGE_SIZE
    )
    more = entries[PAGE_SIZE - 1].id if len(entries) > PAGE_SIZE else None
    balance = await ledger.account_balance(session, account.id)
    context = {
        "account": account,
        "balance": balance,
        "entries": entries[:PAGE_SIZE],
        "pager": pager(f"/console/ledger/accounts/{account.id}", {}, cursor=cursor, last_key=more),
    }
    return page(request, principal, "console/ledger_account.html", context)
