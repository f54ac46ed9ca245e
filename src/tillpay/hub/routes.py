"""Admin API of the event hub: the dead-letter queue, and replaying it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tillpay.accounts.deps import require_permission
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.hub import dead_letters, service
from tillpay.kit.db import DbSession
from tillpay.settings import Settings

router = APIRouter(prefix="/v1/admin/event-hub", tags=["events"])

Manager = Annotated[Principal, Depends(require_permission(Permission.WEBHOOKS_MANAGE))]


class DeadLetterOut(BaseModel):
    message_id: str | None = Field(description="The event's id (the message's message_id).")
    event_type: str | None
    queue: str | None = Field(description="The consumer queue that gave up on it.")
    reason: str | None = Field(description="RabbitMQ's reason: delivery_limit, rejected, …")
    dead_lettered_at: datetime | None
    body_excerpt: str = Field(description="The first 1 KiB of the message body.")


class DeadLetterPage(BaseModel):
    total: int = Field(description="Messages in the dead-letter queue now.")
    items: list[DeadLetterOut]


class ReplayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"message_ids": ["evt_01J…"]}, {}]}
    )
    message_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=dead_letters.MAX_SCAN, description="Which to replay; omitted: all."
    )


class ReplayOut(BaseModel):
    replayed: list[str]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get(
    "/dead-letters",
    response_model=DeadLetterPage,
    summary="Messages tillpay's consumers gave up on (oldest first)",
)
async def list_dead_letters(
    principal: Manager,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=dead_letters.MAX_SCAN)] = 100,
) -> DeadLetterPage:
    total, items = await service.list_dead_letters(_settings(request), limit=limit)
    return DeadLetterPage(total=total, items=[DeadLetterOut.model_validate(vars(i)) for i in items])


@router.post(
    "/dead-letters/replay",
    response_model=ReplayOut,
    summary="Send dead letters back to the consumer queue they died in",
)
async def replay_dead_letters(
    body: ReplayIn, principal: Manager, request: Request, session: DbSession
) -> ReplayOut:
    ids = None if body.message_ids is None else set(body.message_ids)
    replayed = await service.replay_dead_letters(
        session, principal.actor(), _settings(request), ids
    )
    return ReplayOut(replayed=replayed)
