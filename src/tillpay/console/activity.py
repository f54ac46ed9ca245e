"""``/console/activity``: payments, refunds and webhook deliveries as they happen.

The page is complete without JavaScript: the latest events from the outbox and the
latest delivery attempts, read at request time. Its small script (inline, with the page's
CSP nonce) asks ``POST /console/live/ticket`` for a socket ticket
(:mod:`tillpay.realtime.tickets`), opens ``/v1/ws`` with it, subscribes to the ``admin``
channel (``events:read``, as for any admin) and adds each event as it arrives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.console.nav import NAV, NavItem, page
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import ReadSession
from tillpay.kit.errors import NotFound
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint
from tillpay.realtime import tickets
from tillpay.web import session as web_session
from tillpay.web.session import ConsolePrincipal, require_console_permission
from tillpay.web.templating import finish

router = APIRouter(prefix="/console", include_in_schema=False)

# The API's permission for the event feed and the socket's admin channel.
Reader = Annotated[Principal, Depends(require_console_permission(Permission.EVENTS_READ))]
FEED_SIZE: Final = 30
DELIVERIES_SIZE: Final = 12
#: What the feed shows (the live script filters on the same prefixes).
PREFIXES: Final = ("payment.", "refund.", "webhook_endpoint.")

NAV.append(NavItem("Activity", "/console/activity", Permission.EVENTS_READ))


@dataclass(frozen=True)
class Entry:
    id: str
    type: str
    subject_id: str
    at: datetime
    amount: int | None
    currency: str | None
    status: str | None


def _entry(event: OutboxEvent) -> Entry:
    data: Any = event.payload.get("data", {}) if isinstance(event.payload, dict) else {}
    data = data if isinstance(data, dict) else {}
    amount, currency = data.get("amount"), data.get("currency")
    return Entry(
        id=event.id,
        type=event.type,
        subject_id=event.subject_id,
        at=event.created_at,
        amount=amount if isinstance(amount, int) else None,
        currency=currency if isinstance(currency, str) else None,
        status=data.get("status") if isinstance(data.get("status"), str) else None,
    )


async def recent_events(session: AsyncSession, limit: int = FEED_SIZE) -> list[Entry]:
    query = (
        select(OutboxEvent)
        .where(or_(*(OutboxEvent.type.startswith(p) for p in PREFIXES)))
        .where(OutboxEvent.type != "webhook_endpoint.test")
        .order_by(OutboxEvent.created_at.desc(), OutboxEvent.id.desc())
        .limit(limit)
    )
    return [_entry(e) for e in (await session.execute(query)).scalars()]


async def recent_deliveries(
    session: AsyncSession, limit: int = DELIVERIES_SIZE
) -> list[tuple[WebhookAttempt, str]]:
    rows = await session.execute(
        select(WebhookAttempt, WebhookEndpoint.url)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookAttempt.endpoint_id)
        .order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc())
        .limit(limit)
    )
    return [(attempt, url) for attempt, url in rows.all()]


@router.get("/activity")
async def activity_page(request: Request, principal: Reader, session: ReadSession) -> Response:
    context = {
        "entries": await recent_events(session),
        "deliveries": await recent_deliveries(session),
        "live": bool(request.app.state.settings.realtime_enabled),
        "feed_size": FEED_SIZE,
    }
    return page(request, principal, "console/activity.html", context)


@router.post("/live/ticket")
async def live_ticket(request: Request, principal: ConsolePrincipal) -> Response:
    """A socket ticket for this console session (its CSRF token was checked with the
    session, as for every console POST): ``{"ticket": …, "path": "/v1/ws"}``."""
    settings = request.app.state.settings
    claims = web_session.decode(request, request.cookies.get(web_session.COOKIE, ""))
    if not settings.realtime_enabled or claims is None:
        raise NotFound()
    ticket = tickets.issue(
        settings.secret_key.get_secret_value(),
        session_id=principal.session_id,
        user_id=principal.user_id,
        role=str(claims["role"]),
        issued_at=int(claims["iat"]),
    )
    answer = JSONResponse(
        {"ticket": ticket, "path": "/v1/ws", "expires_in": tickets.TICKET_SECONDS}
    )
    return finish(request, answer)
