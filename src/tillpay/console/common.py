"""What the console's admin pages share: who sees which slice, filter parsing, pagers.

A page that admins and vendors both open (orders, vendors, ledger) asks :func:`slice_of`:
an administrator's role holds the "any" permission, which must then be effective (2FA,
else the API's 403 ``admin_2fa_required``); anyone else gets the "own" permission's
slice or the API's 403. Both go through the API's own ``require_permission`` rule, so
the decision is the same, and logged the same, as on the API route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query, Request

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission, permissions_for
from tillpay.accounts.principal import Principal
from tillpay.kit.errors import BadRequest
from tillpay.kit.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor

Text = Annotated[str, Query(max_length=100)]
CursorParam = Annotated[str, Query(max_length=200)]
PAGE_SIZE = DEFAULT_LIMIT


async def slice_of(
    request: Request, principal: Principal, *, any_: Permission, own: Permission
) -> bool:
    """True: the whole view (``any_``); False: the person's own slice (``own``)."""
    if any_ in permissions_for(principal.role):
        await require_permission(any_)(request, principal)
        return True
    await require_permission(own)(request, principal)
    return False


def clean(value: str) -> str | None:
    """A filter field: stripped; empty is no filter. NUL bytes are refused (PostgreSQL
    would fail the query on them)."""
    value = value.strip()
    if "\x00" in value:
        raise BadRequest("A filter holds a character that is not allowed.", code="bad_filter")
    return value or None


def parse_day(value: str, label: str) -> date | None:
    """``YYYY-MM-DD`` (an ``<input type=date>``), or None when empty; 400 otherwise."""
    text = clean(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{label}: enter a date as YYYY-MM-DD.", code="bad_filter") from None


def parse_moment(value: str, label: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM`` (an ``<input type=datetime-local>``, read as UTC) or a date."""
    text = clean(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{label}: enter a time as YYYY-MM-DD HH:MM (UTC).", code="bad_filter"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime:
    """The instant after ``day`` ends (an exclusive bound)."""
    return day_start(day) + timedelta(days=1)


def cursor_key(cursor: str) -> str | None:
    """The sort key a pager link carries (400 for a forged or broken one)."""
    return decode_cursor(cursor) if cursor else None


@dataclass(frozen=True)
class Pager:
    """Links to the first and the next page of a listing, its filters kept."""

    first: str | None
    next: str | None


def pager(
    path: str, filters: Mapping[str, str | None], *, cursor: str, last_key: str | None
) -> Pager:
    kept = {k: v for k, v in filters.items() if v}
    first = f"{path}?{urlencode(kept)}" if kept else path
    following = None
    if last_key is not None:
        following = f"{path}?{urlencode({**kept, 'cursor': encode_cursor(last_key)})}"
    return Pager(first=first if cursor else None, next=following)
