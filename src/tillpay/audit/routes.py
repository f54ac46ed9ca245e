"""Admin read access to the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.service import Principal
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import DbSession
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class AuditEventOut(BaseModel):
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
    session: DbSession,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AuditPage:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor_id:
        query = query.where(AuditEvent.actor_id == actor_id)
    if target_id:
        query = query.where(AuditEvent.target_id == target_id)
    if cursor:
        query = query.where(AuditEvent.id < decode_cursor(cursor))
    rows = list((await session.execute(query)).scalars())
    page = rows[:limit]
    return AuditPage(
        items=[
            AuditEventOut(
                id=e.id,
                occurred_at=e.occurred_at,
                action=e.action,
                outcome=e.outcome,
                actor_id=e.actor_id,
                actor_role=e.actor_role,
                target_type=e.target_type,
                target_id=e.target_id,
                ip=e.ip,
                request_id=e.request_id,
                details=dict(e.details),
            )
            for e in page
        ],
        next_cursor=encode_cursor(page[-1].id) if len(rows) > limit and page else None,
    )
