"""``/console/events``: provider webhook events that need an operator (dead, failing),
their redacted payload, and replaying them with the API's own service
(``payments.webhooks.replay_webhook``: the same lock, audit entry and processing)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.console.nav import NAV, NavItem, page
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import Conflict, NotFound
from tillpay.kit.logging import redact_data, redact_text
from tillpay.payments import webhooks as webhook_service
from tillpay.payments.models import WebhookEvent, WebhookEventStatus
from tillpay.web.session import require_console_permission
from tillpay.web.templating import NOTICES, redirect

router = APIRouter(prefix="/console", include_in_schema=False)

# The API's permission for these events (``payments.routes``: ``Operator``).
Operator = Annotated[Principal, Depends(require_console_permission(Permission.PAYMENTS_OPERATE))]
EventId = Annotated[str, Path(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]

NAV.append(NavItem("Provider events", "/console/events", Permission.PAYMENTS_OPERATE))
NOTICES.update(
    {
        "replayed": "Replayed: the events are pending again and will be processed shortly.",
        "replayed_partly": "Replayed the dead events selected; the others were no longer "
        "dead and were left as they are.",
    }
)

LIMIT: Final = 100
#: ``attention``: dead, or still retrying after a failure (what an operator looks at).
STATES: Final = ("attention", "dead", "failing", "pending", "processed", "ignored", "all")
StateQuery = Annotated[str, Query(pattern="^(" + "|".join(STATES) + ")$")]
ProviderQuery = Annotated[str, Query(max_length=32, pattern=r"^[a-z0-9_]*$")]


def _where_state(state: str) -> list[Any]:
    dead = WebhookEvent.status == WebhookEventStatus.DEAD
    failing = (WebhookEvent.status == WebhookEventStatus.PENDING) & (WebhookEvent.attempts > 0)
    if state == "attention":
        return [dead | failing]
    if state == "dead":
        return [dead]
    if state == "failing":
        return [failing]
    if state == "all":
        return []
    return [WebhookEvent.status == state]


async def _events(session: AsyncSession, state: str, provider: str) -> list[WebhookEvent]:
    query = select(WebhookEvent).where(*_where_state(state))
    if provider:
        query = query.where(WebhookEvent.provider == provider)
    rows = await session.execute(query.order_by(WebhookEvent.received_at.desc()).limit(LIMIT))
    return list(rows.scalars())


async def _providers(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(WebhookEvent.provider).distinct())
    return sorted(rows.scalars())


async def _counts(session: AsyncSession) -> dict[str, int]:
    dead = await session.scalar(
        select(func.count()).where(WebhookEvent.status == WebhookEventStatus.DEAD)
    )
    failing = await session.scalar(select(func.count()).where(*_where_state("failing")))
    return {"dead": int(dead or 0), "failing": int(failing or 0)}


def state_of(event: WebhookEvent) -> str:
    """``failing`` for a pending event that failed at least once; else its status."""
    if event.status is WebhookEventStatus.PENDING and event.attempts > 0:
        return "failing"
    return event.status.value


def redacted_payload(raw: str) -> str:
    """The stored body, pretty-printed, with the log redaction applied (secrets, tokens,
    signatures, card numbers, credentials: the rule every log line follows)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return redact_text(raw)
    return json.dumps(redact_data(parsed), indent=2, sort_keys=True, ensure_ascii=False)


@router.get("/events")
async def events_page(
    request: Request,
    principal: Operator,
    session: ReadSession,
    state: StateQuery = "attention",
    provider: ProviderQuery = "",
) -> Response:
    context = {
        "events": [(e, state_of(e)) for e in await _events(session, state, provider)],
        "providers": await _providers(session),
        "counts": await _counts(session),
        "state": state,
        "states": STATES,
        "provider": provider,
        "limit": LIMIT,
    }
    return page(request, principal, "console/events.html", context)


@router.get("/events/{event_id}")
async def event_page(
    request: Request, principal: Operator, session: ReadSession, event_id: EventId
) -> Response:
    event = await session.get(WebhookEvent, event_id)
    if event is None:
        raise NotFound("No such webhook event.")
    context = {"event": event, "state": state_of(event), "payload": redacted_payload(event.payload)}
    return page(request, principal, "console/event_detail.html", context)


@router.post("/events/replay")
async def replay(
    request: Request,
    principal: Operator,
    session: DbSession,
    event_id: Annotated[list[str], Form(min_length=1, max_length=LIMIT)],
) -> Response:
    """Replay the dead events selected (the API's service, one by one in this unit of
    work). One no longer dead (posted twice, or replayed meanwhile) is left as it is; when
    none was dead any more, nothing happened: a 409 page says so."""
    replayed = skipped = 0
    for one in dict.fromkeys(event_id):
        if not one or len(one) > 40:
            raise NotFound("No such webhook event.")
        try:
            await webhook_service.replay_webhook(session, principal, one)
        except Conflict:
            skipped += 1
        else:
            replayed += 1
    if not replayed:
        raise Conflict(
            "None of the selected events is dead any more (replayed already?): nothing "
            "was replayed.",
            code="event_not_dead",
        )
    notice = "replayed_partly" if skipped else "replayed"
    return redirect(request, "/console/events", state="pending", notice=notice)
