"""Admin read access to the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.queries import AuditFilter, list_events
from tillpay.kit.db import ReadSession
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
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


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


@router.get("/audit-events", response_model=AuditPage, summary="The audit trail, newest first")
async def audit_events(
    principal: Annotated[Principal, Depends(require_permission(Permission.AUDIT_READ))],
    session: ReadSession,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AuditPage:
    before = decode_cursor(cursor) if cursor else None
    where = AuditFilter(action=action, actor_id=actor_id, target_id=target_id, before_id=before)
    page, more = await list_events(session, where, limit=limit)
    return AuditPage(
        items=[AuditEventOut.model_validate(e) for e in page],
        next_cursor=encode_cursor(page[-1].id) if more and page else None,
    )
