"""The event feed (``events:read``): what webhooks carry, to poll or to catch up with."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.kit.db import ReadSession
from tillpay.kit.ids import id_pattern
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from tillpay.merchant_webhooks import feed

router = APIRouter(tags=["events"])

Reader = Annotated[Principal, Depends(require_permission(Permission.EVENTS_READ))]


class EventPage(BaseModel):
    data: list[dict[str, Any]] = Field(
        description="Events, oldest first, each the JSON body a webhook endpoint receives."
    )
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null: nothing more yet (poll later "
        "with the last event's id)."
    )


@router.get(
    "/v1/events",
    response_model=EventPage,
    summary="Events after an id (a webhook endpoint's catch-up feed)",
    description="Events become visible here 5 s after they happen, so resuming after the "
    "last id seen never skips one. Internal events are never listed.",
)
async def list_events(
    principal: Reader,
    session: ReadSession,
    after: Annotated[str | None, Query(pattern=id_pattern("evt"))] = None,
    type: Annotated[str | None, Query(max_length=64, description="One event type.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> EventPage:
    data, next_after = await feed.page(session, after=after, event_type=type, limit=limit)
    return EventPage(data=data, next_after=next_after)
