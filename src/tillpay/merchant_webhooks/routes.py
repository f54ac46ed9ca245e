"""Admin API of merchant webhooks: endpoints, their delivery log, redelivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from tillpay.accounts.deps import require_permission, require_recent_auth_of_people
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.events.catalogue import PUBLIC
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.ids import id_pattern
from tillpay.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from tillpay.merchant_webhooks import service
from tillpay.merchant_webhooks.schemas import (
    AttemptOut,
    AttemptPage,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    EventTypeOut,
    RecoverIn,
    RecoverOut,
)
from tillpay.settings import Settings

router = APIRouter(prefix="/v1/admin", tags=["webhooks"])

Manager = Annotated[Principal, Depends(require_permission(Permission.WEBHOOKS_MANAGE))]
# Creating an endpoint or a secret hands out where payment events go and how they are
# signed: a fresh authentication, as for refunds.
RECENT = [Depends(require_recent_auth_of_people)]
EndpointId = Annotated[str, Path(pattern=id_pattern("whe"))]
DeliveryId = Annotated[str, Path(pattern=id_pattern("dlv"))]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _with_secret(created: service.WithSecret) -> EndpointWithSecret:
    out = EndpointOut.model_validate(created.endpoint)
    return EndpointWithSecret(**out.model_dump(), secret=created.secret)


@router.get("/event-types", response_model=list[EventTypeOut], summary="Every event type")
async def event_types(principal: Manager) -> list[EventTypeOut]:
    return [
        EventTypeOut(
            name=e.name,
            subject=e.subject,
            description=e.description,
            details=dict(e.details),
            example=dict(e.example),
        )
        for e in PUBLIC
    ]


@router.post(
    "/webhook-endpoints",
    response_model=EndpointWithSecret,
    status_code=201,
    dependencies=RECENT,
    summary="Register a webhook endpoint (its secret is shown once)",
)
async def create_endpoint(
    body: EndpointCreate, principal: Manager, session: DbSession, request: Request
) -> EndpointWithSecret:
    created = await service.create_endpoint(
        session,
        _settings(request),
        principal.actor(),
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return _with_secret(created)


@router.get("/webhook-endpoints", response_model=list[EndpointOut], summary="Webhook endpoints")
async def list_endpoints(principal: Manager, session: ReadSession) -> list[EndpointOut]:
    return [EndpointOut.model_validate(e) for e in await service.list_endpoints(session)]


@router.get(
    "/webhook-endpoints/{endpoint_id}", response_model=EndpointOut, summary="A webhook endpoint"
)
async def get_endpoint(
    endpoint_id: EndpointId, principal: Manager, session: ReadSession
) -> EndpointOut:
    return EndpointOut.model_validate(await service.get_endpoint(session, endpoint_id))


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    response_model=EndpointOut,
    summary="Change an endpoint (URL, event types, description, enabled)",
)
async def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    principal: Manager,
    session: DbSession,
    request: Request,
) -> EndpointOut:
    endpoint = await service.update_endpoint(
        session,
        _settings(request),
        principal.actor(),
        endpoint_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
    )
    return EndpointOut.model_validate(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}", status_code=204, summary="Delete a webhook endpoint"
)
async def delete_endpoint(
    endpoint_id: EndpointId, principal: Manager, session: DbSession
) -> Response:
    await service.delete_endpoint(session, principal.actor(), endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    dependencies=RECENT,
    summary="Rotate the signing secret (the old one signs too during the overlap)",
)
async def rotate_secret(
    endpoint_id: EndpointId, principal: Manager, session: DbSession, request: Request
) -> EndpointWithSecret:
    return _with_secret(
        await service.rotate_secret(session, _settings(request), principal.actor(), endpoint_id)
    )


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=AttemptPage,
    summary="An endpoint's delivery attempts, newest first",
)
async def deliveries(
    endpoint_id: EndpointId,
    principal: Manager,
    session: ReadSession,
    cursor: Annotated[str | None, Query(pattern=id_pattern("wha"))] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AttemptPage:
    rows = await service.attempts(session, endpoint_id, limit=limit, before=cursor)
    page = rows[:limit]
    return AttemptPage(
        items=[AttemptOut.model_validate(a) for a in page],
        next_cursor=page[-1].id if len(rows) > limit else None,
    )


@router.post(
    "/webhook-endpoints/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    summary="Send one delivery again now",
)
async def redeliver(delivery_id: DeliveryId, principal: Manager, session: DbSession) -> DeliveryOut:
    return DeliveryOut.model_validate(
        await service.redeliver(session, principal.actor(), delivery_id)
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/recover",
    response_model=RecoverOut,
    summary="Redeliver every failed delivery since a time",
)
async def recover(
    endpoint_id: EndpointId, body: RecoverIn, principal: Manager, session: DbSession
) -> RecoverOut:
    count = await service.recover(session, principal.actor(), endpoint_id, since=body.since)
    return RecoverOut(redelivered=count)


@router.post(
    "/webhook-endpoints/{endpoint_id}/test",
    response_model=DeliveryOut,
    status_code=202,
    summary="Send a test event (`webhook_endpoint.test`) to this endpoint only",
)
async def send_test_event(
    endpoint_id: EndpointId, principal: Manager, session: DbSession
) -> DeliveryOut:
    return DeliveryOut.model_validate(
        await service.send_test_event(session, principal.actor(), endpoint_id)
    )
