"""Admin read access to the audit trail: pages of JSON, or a streamed export."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.admin import audit_export
from tillpay.audit.queries import AuditFilter, list_events
from tillpay.kit.db import ReadSession
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    seq: int
    occurred_at: datetime
    action: str
    outcome: str
    actor_id: str | None
    actor_role: str | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


async def audit_filter(
    action: Annotated[str | None, Query(max_length=64, description="Exact action.")] = None,
    actor_id: Annotated[str | None, Query(max_length=40, description="Acting user.")] = None,
    target_type: Annotated[
        str | None, Query(max_length=32, description="Kind of object acted on.")
    ] = None,
    target_id: Annotated[str | None, Query(max_length=40, description="Object acted on.")] = None,
    occurred_from: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="Events at or after this time (with offset)."),
    ] = None,
    occurred_to: Annotated[
        AwareDatetime | None, Query(alias="to", description="Events before this time.")
    ] = None,
) -> AuditFilter:
    return AuditFilter(action, actor_id, target_type, target_id, occurred_from, occurred_to)


_EXPORTS = {
    audit_export.NDJSON: {"schema": {"type": "string"}, "example": '{"id":"aud_…"}\n'},
    audit_export.CSV: {"schema": {"type": "string"}, "example": "id,occurred_at,…\r\n"},
}


@router.get(
    "/audit-events",
    response_model=AuditPage,
    summary="The audit trail, newest first; or all of it streamed, in chain order",
    description=(
        "Filters combine (AND). With `Accept: application/x-ndjson` or `text/csv` every "
        "matching event is streamed in chain order (`seq`) instead of a page; `cursor` "
        "and `limit` apply to JSON pages only."
    ),
    responses={200: {"content": _EXPORTS}},
)
async def audit_events(
    principal: Annotated[Principal, Depends(require_permission(Permission.AUDIT_READ))],
    session: ReadSession,
    request: Request,
    where: Annotated[AuditFilter, Depends(audit_filter)],
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AuditPage | Response:
    media = audit_export.negotiate(accept)
    if media != audit_export.JSON:
        return audit_export.export(request.app.state.database, where, media)
    before = decode_cursor(cursor) if cursor else None
    where = dataclasses.replace(where, before_id=before)
    page, more = await list_events(session, where, limit=limit)
    return AuditPage(
        items=[AuditEventOut.model_validate(e) for e in page],
        next_cursor=encode_cursor(page[-1].id) if more and page else None,
    )
