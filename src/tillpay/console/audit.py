"""``/console/audit``: search the audit trail, see the chain head, export it as a file.

The same permission, filter and queries as ``GET /v1/admin/audit-events``
(``audit:read``; ``audit.queries.list_events``, newest first, keyset-paginated), and the
same export (``admin.audit_export.export``: every matching event streamed in chain order
as CSV or NDJSON, chain columns included). The API exposes no chain verification, so the
page shows the chain head (``seq`` and hash, to keep elsewhere as an anchor) and points
to ``tillpay audit verify``, which walks the whole chain.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.accounts.users import user_by_email
from tillpay.admin import audit_export
from tillpay.audit.models import AuditChainHead, AuditEvent
from tillpay.audit.queries import AuditFilter, list_events
from tillpay.console.common import (
    PAGE_SIZE,
    CursorParam,
    Text,
    clean,
    cursor_key,
    pager,
    parse_moment,
)
from tillpay.console.nav import page
from tillpay.kit.db import ReadSession
from tillpay.kit.errors import BadRequest
from tillpay.web.session import require_console_permission
from tillpay.web.templating import finish

router = APIRouter(prefix="/console", include_in_schema=False)

Reader = Annotated[Principal, Depends(require_console_permission(Permission.AUDIT_READ))]
FORMATS = {"csv": audit_export.CSV, "ndjson": audit_export.NDJSON}


@dataclasses.dataclass(frozen=True)
class AuditForm:
    """The search form's fields, as typed (shown again above the results)."""

    actor: str = ""
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    occurred_from: str = ""
    occurred_to: str = ""


async def _audit_form(
    actor: Text = "",
    action: Text = "",
    target_type: Text = "",
    target_id: Text = "",
    occurred_from: Text = "",
    occurred_to: Text = "",
) -> AuditForm:
    # An async factory, not Depends(AuditForm): a class would run in the thread pool.
    return AuditForm(actor, action, target_type, target_id, occurred_from, occurred_to)


Form = Annotated[AuditForm, Depends(_audit_form)]


async def _filter(session: ReadSession, form: AuditForm) -> AuditFilter | None:
    """The API's filter from the form (None: an actor email no account has). The actor
    is an account id, or an email address looked up to one."""
    actor, action, target_type, target_id = (
        form.actor,
        form.action,
        form.target_type,
        form.target_id,
    )
    occurred_from, occurred_to = form.occurred_from, form.occurred_to
    actor_id = clean(actor)
    if actor_id is not None and "@" in actor_id:
        user = await user_by_email(session, actor_id.lower())
        if user is None:
            return None
        actor_id = user.id
    for label, value, size in (
        ("Actor", actor_id, 40),
        ("Action", clean(action), 64),
        ("Object type", clean(target_type), 32),
        ("Object id", clean(target_id), 40),
    ):
        if value is not None and len(value) > size:
            raise BadRequest(f"{label}: at most {size} characters.", code="bad_filter")
    start, end = parse_moment(occurred_from, "From"), parse_moment(occurred_to, "To")
    if start is not None and end is not None and end <= start:
        raise BadRequest("The end of the time range must come after its start.", code="bad_filter")
    return AuditFilter(
        action=clean(action),
        actor_id=actor_id,
        target_type=clean(target_type),
        target_id=clean(target_id),
        occurred_from=start,
        occurred_to=end,
    )


async def _search(session: ReadSession, form: AuditForm, cursor: str) -> dict[str, object]:
    """The page's context: one page of matching events, the chain head, the pager."""
    filters = dataclasses.asdict(form)
    where = await _filter(session, form)
    rows: list[AuditEvent] = []
    more = False
    if where is not None:
        where = dataclasses.replace(where, before_id=cursor_key(cursor))
        rows, more = await list_events(session, where, limit=PAGE_SIZE)
    head = (
        await session.execute(select(AuditChainHead.seq, AuditChainHead.hash).limit(1))
    ).one_or_none()
    last_key = rows[-1].id if more and rows else None
    return {
        "rows": rows,
        "filters": filters,
        "head": head,
        "export_query": {k: v for k, v in filters.items() if v},
        "pager": pager("/console/audit", filters, cursor=cursor, last_key=last_key),
    }


@router.get("/audit")
async def audit_search(
    request: Request, principal: Reader, session: ReadSession, form: Form, cursor: CursorParam = ""
) -> Response:
    context = await _search(session, form, cursor)
    return page(request, principal, "console/audit.html", context)


@router.get("/audit/export")
async def audit_download(
    request: Request,
    principal: Reader,
    session: ReadSession,
    form: Form,
    format: Annotated[str, Query(pattern="^(csv|ndjson)$")] = "csv",
) -> Response:
    """``GET /v1/admin/audit-events`` with ``Accept: text/csv`` (or NDJSON), as a file."""
    where = await _filter(session, form)
    if where is None:  # an unknown actor email: an export that matches nothing
        where = AuditFilter(actor_id="usr_none")
    # finish: no-store, and the session's sliding cookie, as on every console answer.
    return finish(request, audit_export.export(request.app.state.database, where, FORMATS[format]))
