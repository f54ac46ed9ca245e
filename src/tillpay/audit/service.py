"""Recording audit events.

``record`` joins the caller's transaction: the event commits or rolls back with the change
it describes. It is inserted, and chained (``audit/chain.py``), when that transaction
commits. Events that must survive a refused request (a failed login) are recorded
before the service raises ``kit.errors.CommittedRefusal``: the unit of work commits them,
then answers with the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit import chain
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow
from tillpay.kit.ids import new_id
from tillpay.kit.logging import get_logger

log = get_logger("tillpay.audit")


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (with role), or the system itself (``id=None``)."""

    id: str | None
    role: str | None = None
    ip: str | None = None
    # A machine credential's name (``api_key:key_…``, ``service:<issuer>``; the shop user a
    # service token names may be longer than ``id`` holds): kept in the entry's details.
    credential: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(id=None, role="SYSTEM")


def _event(
    actor: Actor,
    action: str,
    *,
    outcome: str,
    target_type: str | None,
    target_id: str | None,
    details: Mapping[str, Any] | None,
) -> AuditEvent:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return AuditEvent(
        id=new_id("aud"),
        occurred_at=utcnow(),
        action=action,
        outcome=outcome,
        actor_id=actor.id,
        actor_role=actor.role,
        target_type=target_type,
        target_id=target_id,
        ip=actor.ip,
        request_id=request_id if isinstance(request_id, str) else None,
        details=dict(details or {})
        | ({"credential": actor.credential} if actor.credential else {}),
    )


async def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    outcome: str = "success",
    target_type: str | None = None,
    target_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction (inserted when it commits)."""
    event = _event(
        actor,
        action,
        outcome=outcome,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )
    chain.defer(session.sync_session, event)
    log.info(
        "audit." + action,
        outcome=outcome,
        actor_id=actor.id,
        target_type=target_type,
        target_id=target_id,
    )
    return event
