"""The hub's admin operations: reading and replaying the dead-letter queue."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit import service as audit
from tillpay.audit.service import Actor
from tillpay.hub import broker, dead_letters
from tillpay.hub.jobs import topology_of
from tillpay.kit.errors import Conflict, ServiceUnavailable
from tillpay.settings import Settings


def _broker(settings: Settings) -> tuple[str, broker.Topology]:
    if settings.broker_url is None:
        raise Conflict("No broker is configured (TILLPAY_BROKER_URL).", code="no_broker")
    return settings.broker_url.get_secret_value(), topology_of(settings)


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The broker is unreachable.", code="broker_unavailable")


async def list_dead_letters(
    settings: Settings, *, limit: int
) -> tuple[int, list[dead_letters.DeadLetter]]:
    """How many messages the dead-letter queue holds, and the first ``limit``."""
    url, topology = _broker(settings)
    try:
        return (
            await dead_letters.count(url, topology),
            await dead_letters.peek(url, topology, limit=limit),
        )
    except broker.BrokerUnavailable:
        raise _unavailable() from None


async def replay_dead_letters(
    session: AsyncSession, actor: Actor, settings: Settings, message_ids: Collection[str] | None
) -> list[str]:
    """Replay dead letters (``hub/dead_letters.replay``), audited."""
    url, topology = _broker(settings)
    try:
        replayed = await dead_letters.replay(url, topology, message_ids=message_ids)
    except broker.BrokerUnavailable:
        raise _unavailable() from None
    await audit.record(
        session,
        actor,
        "event_hub.dead_letters_replayed",
        details={"count": len(replayed), "message_ids": replayed[:100]},
    )
    return replayed
