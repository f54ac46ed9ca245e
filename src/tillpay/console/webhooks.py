"""``/console/webhooks``: merchant webhook endpoints and their delivery log. Every action
calls the service the admin API calls (``merchant_webhooks.service``), with the API's
permission (``webhooks:manage``) and, where the API asks a recent sign-in (creating an
endpoint, rotating its secret), the console's step-up."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay import event_payloads
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.console.nav import NAV, NavItem, page
from tillpay.events.catalogue import PUBLIC
from tillpay.events.models import EventDelivery, OutboxEvent
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import AppError, NotFound
from tillpay.kit.ids import id_pattern
from tillpay.merchant_webhooks import service
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint
from tillpay.settings import Settings
from tillpay.web import errors
from tillpay.web.session import require_console_permission, require_console_recent
from tillpay.web.templating import NOTICES, redirect

router = APIRouter(prefix="/console/webhooks", include_in_schema=False)

_MANAGE = require_console_permission(Permission.WEBHOOKS_MANAGE)
Manager = Annotated[Principal, Depends(_MANAGE)]
# As the API's ``RECENT``: a fresh sign-in to hand out where events go and how they are
# signed (the permission first, so no one without it is sent to step up for nothing).
RECENT = [Depends(_MANAGE), Depends(require_console_recent)]
EndpointId = Annotated[str, Path(pattern=id_pattern("whe"))]
DeliveryId = Annotated[str, Path(pattern=id_pattern("dlv"))]
PAGE_SIZE: Final = 25

NAV.append(NavItem("Webhooks", "/console/webhooks", Permission.WEBHOOKS_MANAGE))
NOTICES.update(
    {
        "endpoint_enabled": "Endpoint enabled: new events are delivered to it again.",
        "endpoint_disabled": "Endpoint disabled: no event is sent to it until you enable it.",
        "redelivered": "Queued for redelivery: it is sent again within a few seconds.",
        "recovered": "Every failed delivery since that time is queued again.",
        "test_sent": "Test event queued: it appears in the delivery log within a few seconds.",
    }
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _event_types() -> list[dict[str, str]]:
    return [{"name": e.name, "description": e.description} for e in PUBLIC]


def _form_page(
    request: Request,
    principal: Principal,
    *,
    error: str | None = None,
    url: str = "",
    description: str = "",
    chosen: list[str] | None = None,
) -> Response:
    context = {
        "error": error,
        "url": url,
        "description": description,
        "chosen": chosen or [],
        "event_types": _event_types(),
    }
    return page(request, principal, "console/webhook_new.html", context, 200 if not error else 422)


@router.get("")
async def endpoints_page(request: Request, principal: Manager, session: ReadSession) -> Response:
    context = {"endpoints": await service.list_endpoints(session)}
    return page(request, principal, "console/webhooks.html", context)


@router.get("/new", dependencies=RECENT)
async def new_endpoint_page(request: Request, principal: Manager) -> Response:
    return _form_page(request, principal)


@router.post("/new", dependencies=RECENT)
async def create_endpoint(
    request: Request,
    principal: Manager,
    session: DbSession,
    url: Annotated[str, Form(min_length=8, max_length=2048)],
    event_types: Annotated[list[str], Form(min_length=1, max_length=50)],
    description: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    url = url.strip()
    types = ["*"] if "*" in event_types else event_types

    def again(exc: AppError) -> Response:
        return _form_page(
            request, principal, error=exc.detail, url=url, description=description, chosen=types
        )

    errors.on_error(request, again)
    created = await service.create_endpoint(
        session,
        _settings(request),
        principal.actor(),
        url=url,
        event_types=types,
        description=description.strip(),
    )
    # Shown in this answer only (never in a URL, never stored in clear): no redirect.
    context = {"endpoint": created.endpoint, "secret": created.secret, "rotated": False}
    return page(request, principal, "console/webhook_secret.html", context, 201)


async def _deliveries(
    session: AsyncSession, attempts: list[WebhookAttempt]
) -> dict[str, EventDelivery]:
    ids = {a.delivery_id for a in attempts}
    if not ids:
        return {}
    rows = await session.execute(select(EventDelivery).where(EventDelivery.id.in_(ids)))
    return {d.id: d for d in rows.scalars()}


async def _bodies(session: AsyncSession, attempts: list[WebhookAttempt]) -> dict[str, str]:
    """Each event's body as a delivery sends it now (``data.object``: the current state)."""
    ids = {a.event_id for a in attempts}
    if not ids:
        return {}
    rows = await session.execute(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))
    return {
        event.id: json.dumps(await event_payloads.payload(session, event), indent=2)
        for event in rows.scalars()
    }


@router.get("/{endpoint_id}")
async def endpoint_page(
    request: Request,
    principal: Manager,
    session: ReadSession,
    endpoint_id: EndpointId,
    before: Annotated[str | None, Query(pattern=id_pattern("wha"))] = None,
) -> Response:
    endpoint = await service.get_endpoint(session, endpoint_id)
    rows = await service.attempts(session, endpoint_id, limit=PAGE_SIZE, before=before)
    attempts = rows[:PAGE_SIZE]
    context: dict[str, Any] = {
        "endpoint": endpoint,
        "attempts": attempts,
        "deliveries": await _deliveries(session, attempts),
        "bodies": await _bodies(session, attempts),
        "next_before": attempts[-1].id if len(rows) > PAGE_SIZE else None,
        "before": before,
        "now": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"),
    }
    return page(request, principal, "console/webhook_detail.html", context)


@router.get("/{endpoint_id}/rotate", dependencies=RECENT)
async def rotate_page(
    request: Request, principal: Manager, session: ReadSession, endpoint_id: EndpointId
) -> Response:
    endpoint = await service.get_endpoint(session, endpoint_id)
    hours = _settings(request).webhooks_secret_overlap_hours
    context = {"endpoint": endpoint, "overlap_hours": hours}
    return page(request, principal, "console/webhook_rotate.html", context)


@router.post("/{endpoint_id}/rotate", dependencies=RECENT)
async def rotate_secret(
    request: Request, principal: Manager, session: DbSession, endpoint_id: EndpointId
) -> Response:
    rotated = await service.rotate_secret(
        session, _settings(request), principal.actor(), endpoint_id
    )
    context = {"endpoint": rotated.endpoint, "secret": rotated.secret, "rotated": True}
    return page(request, principal, "console/webhook_secret.html", context)


@router.post("/{endpoint_id}/enabled")
async def set_enabled(
    request: Request,
    principal: Manager,
    session: DbSession,
    endpoint_id: EndpointId,
    enabled: Annotated[bool, Form()],
) -> Response:
    await service.update_endpoint(
        session,
        _settings(request),
        principal.actor(),
        endpoint_id,
        url=None,
        event_types=None,
        description=None,
        enabled=enabled,
    )
    notice = "endpoint_enabled" if enabled else "endpoint_disabled"
    return redirect(request, f"/console/webhooks/{endpoint_id}", notice=notice)


@router.post("/{endpoint_id}/test")
async def send_test_event(
    request: Request, principal: Manager, session: DbSession, endpoint_id: EndpointId
) -> Response:
    await service.send_test_event(session, principal.actor(), endpoint_id)
    return redirect(request, f"/console/webhooks/{endpoint_id}", notice="test_sent")


@router.post("/{endpoint_id}/recover")
async def recover(
    request: Request,
    principal: Manager,
    session: DbSession,
    endpoint_id: EndpointId,
    since: Annotated[datetime, Form()],
) -> Response:
    """``since`` from a ``datetime-local`` field, which carries no offset: it is UTC, as
    every time the console shows."""
    moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    await service.recover(session, principal.actor(), endpoint_id, since=moment)
    return redirect(request, f"/console/webhooks/{endpoint_id}", notice="recovered")


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(
    request: Request, principal: Manager, session: DbSession, delivery_id: DeliveryId
) -> Response:
    delivery = await service.redeliver(session, principal.actor(), delivery_id)
    endpoint_id = service.endpoint_of(delivery.consumer)
    if await session.get(WebhookEndpoint, endpoint_id) is None:
        raise NotFound("No such webhook endpoint.")
    return redirect(request, f"/console/webhooks/{endpoint_id}", notice="redelivered")
