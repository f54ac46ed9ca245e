"""Registering and managing endpoints (admin), and choosing which endpoints receive an
event (the relay's fan-out). Every change is audited; secrets are sealed at rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit.service import Actor, record
from tillpay.events import dispatch
from tillpay.events.catalogue import INTERNAL, PUBLIC
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.events.service import emit
from tillpay.kit.crypto import seal, unseal
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, NotFound, Unprocessable
from tillpay.kit.ids import new_id
from tillpay.kit.jobs import nudge_after_commit
from tillpay.merchant_webhooks import signing, targets
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint
from tillpay.settings import Settings

#: Deliveries to endpoint ``whe_…`` are consumed as ``webhook:whe_…``.
CONSUMER_PREFIX = "webhook:"
#: The event an administrator sends to one endpoint to try it.
TEST_EVENT = "webhook_endpoint.test"
#: The worker job that delivers (``delivery.py``, which imports this module).
DELIVERY_JOB = "merchant_webhooks.deliver"
_SEAL_PURPOSE = "merchant-webhook-secret"


def consumer_of(endpoint_id: str) -> str:
    return f"{CONSUMER_PREFIX}{endpoint_id}"


def endpoint_of(consumer: str) -> str:
    return consumer.removeprefix(CONSUMER_PREFIX)


async def check_url(settings: Settings, url: str) -> targets.Target:
    """The URL's target, or a 422 saying why it may not receive webhooks."""
    try:
        return await targets.check(
            url,
            allow_http=not settings.is_production,
            allow_private=settings.webhooks_allow_private_targets,
            allowed_ports=settings.webhooks_allowed_ports,
        )
    except targets.TargetRefused as refused:
        raise Unprocessable(str(refused), code="webhook_url_refused") from None


def _check_event_types(event_types: Sequence[str]) -> list[str]:
    public = {e.name for e in PUBLIC}
    unknown = sorted({t for t in event_types if t != "*" and t not in public})
    if unknown:
        raise Unprocessable(
            f"Unknown event types: {', '.join(unknown)} (GET /v1/admin/event-types).",
            code="unknown_event_type",
        )
    return sorted(set(event_types))


def _seal(settings: Settings, endpoint_id: str, secret: str) -> bytes:
    return seal(
        secret.encode(),
        secret=settings.secret_key.get_secret_value().encode(),
        purpose=_SEAL_PURPOSE,
        bound_to=endpoint_id,
    )


def _unseal(settings: Settings, endpoint_id: str, blob: bytes) -> str:
    return unseal(
        blob,
        secret=settings.secret_key.get_secret_value().encode(),
        purpose=_SEAL_PURPOSE,
        bound_to=endpoint_id,
    ).decode()


def signing_secrets(settings: Settings, endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while
    its rotation overlap lasts."""
    live = [_unseal(settings, endpoint.id, endpoint.secret_sealed)]
    if (
        endpoint.previous_secret_sealed is not None
        and endpoint.previous_expires_at is not None
        and endpoint.previous_expires_at > now
    ):
        live.append(_unseal(settings, endpoint.id, endpoint.previous_secret_sealed))
    return live


@dataclass(frozen=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: str


async def create_endpoint(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
) -> WithSecret:
    await check_url(settings, url)
    types = _check_event_types(event_types)
    count = await session.scalar(select(func.count()).select_from(WebhookEndpoint))
    if (count or 0) >= settings.webhooks_max_endpoints:
        raise Conflict("Too many webhook endpoints.", code="too_many_endpoints")
    endpoint_id = new_id("whe")
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        url=url,
        description=description,
        event_types=types,
        enabled=True,
        secret_sealed=_seal(settings, endpoint_id, secret),
    )
    session.add(endpoint)
    await record(
        session,
        actor,
        "webhook_endpoint.created",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        details={"url": url, "event_types": types},
    )
    await session.flush()
    return WithSecret(endpoint, secret)


async def get_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    rows = await session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    return list(rows.scalars())


async def update_endpoint(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    endpoint_id: str,
    *,
    url: str | None,
    event_types: Sequence[str] | None,
    description: str | None,
    enabled: bool | None,
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, endpoint_id)
    changed: dict[str, object] = {}
    if url is not None and url != endpoint.url:
        await check_url(settings, url)
        endpoint.url = changed["url"] = url
    if event_types is not None:
        endpoint.event_types = _check_event_types(event_types)
        changed["event_types"] = endpoint.event_types
    if description is not None:
        endpoint.description = description
        changed["description"] = description
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = changed["enabled"] = enabled
        # Switched back on (or off by hand): the failure streak starts over.
        endpoint.failing_since = None
        endpoint.disabled_reason = None
    await record(
        session,
        actor,
        "webhook_endpoint.updated",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        details=changed,
    )
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, actor: Actor, endpoint_id: str) -> None:
    endpoint = await get_endpoint(session, endpoint_id)
    # Its pending deliveries end with it (the attempt log goes by cascade).
    await session.execute(
        delete(EventDelivery).where(EventDelivery.consumer == consumer_of(endpoint.id))
    )
    await session.delete(endpoint)
    await record(
        session,
        actor,
        "webhook_endpoint.deleted",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        details={"url": endpoint.url},
    )


async def rotate_secret(
    session: AsyncSession, settings: Settings, actor: Actor, endpoint_id: str
) -> WithSecret:
    """A new secret signs from now on; the old one also signs for the overlap, so a
    receiver can switch without losing a delivery."""
    endpoint = await get_endpoint(session, endpoint_id)
    secret = signing.new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_expires_at = utcnow() + timedelta(
        hours=settings.webhooks_secret_overlap_hours
    )
    endpoint.secret_sealed = _seal(settings, endpoint.id, secret)
    await record(
        session,
        actor,
        "webhook_endpoint.secret_rotated",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        details={"previous_expires_at": endpoint.previous_expires_at.isoformat()},
    )
    await session.flush()
    return WithSecret(endpoint, secret)


async def send_test_event(session: AsyncSession, actor: Actor, endpoint_id: str) -> EventDelivery:
    """A ``webhook_endpoint.test`` event for this endpoint only, delivered like any other
    (signed, logged, retried, redeliverable). The outbox row is written already fanned out,
    with its one delivery due now: the relay never takes it, so no other endpoint, the hub
    or realtime receives it."""
    endpoint = await get_endpoint(session, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("Enable the endpoint before testing it.", code="endpoint_disabled")
    now = utcnow()
    data = {"endpoint_id": endpoint.id, "url": endpoint.url}
    event = OutboxEvent(
        id=new_id("evt"),
        type=TEST_EVENT,
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        payload={"type": TEST_EVENT, "data": data},
        created_at=now,
        processed_at=now,
    )
    delivery = EventDelivery(
        event_id=event.id, consumer=consumer_of(endpoint.id), next_attempt_at=now, created_at=now
    )
    session.add(event)
    await session.flush()
    session.add(delivery)
    await record(
        session,
        actor,
        "webhook_endpoint.tested",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        details={"event_id": event.id},
    )
    await session.flush()
    nudge_after_commit(session, DELIVERY_JOB)
    return delivery


async def fan_out(session: AsyncSession, events: Sequence[OutboxEvent]) -> list[tuple[str, str]]:
    """The relay's fan-out for merchant webhooks: each event to every enabled endpoint
    subscribed to its type (internal types never: ``*`` means every public type)."""
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
                WebhookEndpoint.enabled.is_(True)
            )
        )
    ).all()
    return [
        (event.id, consumer_of(endpoint_id))
        for event in events
        if event.type not in INTERNAL
        for endpoint_id, types in endpoints
        if "*" in types or event.type in types
    ]


async def attempts(
    session: AsyncSession, endpoint_id: str, *, limit: int, before: str | None
) -> list[WebhookAttempt]:
    await get_endpoint(session, endpoint_id)
    query = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(WebhookAttempt.id < before)
    rows = await session.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit + 1))
    return list(rows.scalars())


async def redeliver(session: AsyncSession, actor: Actor, delivery_id: str) -> EventDelivery:
    """Send one delivery again at once (any state), with a fresh retry schedule."""
    delivery = (
        await session.execute(
            select(EventDelivery).where(EventDelivery.id == delivery_id).with_for_update()
        )
    ).scalar_one_or_none()
    if delivery is None or not delivery.consumer.startswith(CONSUMER_PREFIX):
        raise NotFound("No such webhook delivery.")
    dispatch.restart(delivery, now=utcnow())
    await record(
        session,
        actor,
        "webhook_delivery.redelivered",
        target_type="webhook_delivery",
        target_id=delivery.id,
        details={"event_id": delivery.event_id, "endpoint_id": endpoint_of(delivery.consumer)},
    )
    return delivery


async def recover(session: AsyncSession, actor: Actor, endpoint_id: str, *, since: datetime) -> int:
    """Redeliver every failed delivery to the endpoint created since ``since``."""
    endpoint = await get_endpoint(session, endpoint_id)
    rows = (
        await session.execute(
            select(EventDelivery)
            .where(
                EventDelivery.consumer == consumer_of(endpoint.id),
                EventDelivery.status == DeliveryStatus.FAILED,
                EventDelivery.created_at >= since,
            )
            .with_for_update()
        )
    ).scalars()
    now = utcnow()
    count = 0
    for delivery in rows:
        dispatch.restart(delivery, now=now)
        count += 1
    await record(
        session,
        actor,
        "webhook_endpoint.recovered",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        details={"since": since.isoformat(), "redelivered": count},
    )
    return count


async def track_health(
    session: AsyncSession,
    settings: Settings,
    endpoint_id: str,
    *,
    failed: bool,
    now: datetime,
) -> bool:
    """Follow the endpoint's failure streak after one attempt; disable it (with an event,
    which tells the admins, and an audit entry) once every delivery has failed for
    ``webhooks_disable_after_hours``. True when this call disabled it."""
    if not failed:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return False
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
    )
    cutoff = now - timedelta(hours=settings.webhooks_disable_after_hours)
    endpoint = (
        await session.execute(
            select(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.enabled.is_(True),
                WebhookEndpoint.failing_since <= cutoff,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if endpoint is None:
        return False
    endpoint.enabled = False
    endpoint.disabled_reason = "failing"
    details = {
        "endpoint_id": endpoint.id,
        "url": endpoint.url,
        "failing_since": endpoint.failing_since.isoformat() if endpoint.failing_since else None,
        "reason": "failing",
    }
    await record(
        session,
        Actor.system(),
        "webhook_endpoint.disabled",
        outcome="disabled",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        details=details,
    )
    await emit(
        session,
        "webhook_endpoint.disabled",
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        data=details,
    )
    return True
