"""The delivery job: POST due events to their endpoints, signed, and book each attempt.

At-least-once: a delivery is marked delivered only after a 2xx, and a worker killed
mid-send leaves its claim to lapse, so the receiver may see an event twice; the
``webhook-id`` header (the event id) is the same on every attempt, for receivers to dedupe.
No database transaction is open during the HTTP call.

Concurrency: each delivery is claimed with a slot of its endpoint (``slots.py``), so at
most ``TILLPAY_WEBHOOKS_ENDPOINT_CONCURRENCY`` requests are in flight to one endpoint
across every worker, and one endpoint's backlog takes at most that many places of a
batch. A run sends its whole batch at once (database work ``worker_width`` at a time), so
a slow receiver delays no other endpoint's delivery, and each request is cut off before
its slot's lease could lapse.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay import event_payloads
from tillpay.events import dispatch
from tillpay.events.models import OutboxEvent
from tillpay.kit import leases
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jobs import JobContext, for_each
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import tls_context
from tillpay.merchant_webhooks import service, signing, slots, targets
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint
from tillpay.settings import Settings

log = get_logger(__name__)

DELIVERY_JOB = service.DELIVERY_JOB
#: How long a claimed delivery is left to the run that claimed it (beyond any timeout).
CLAIM_LEASE = timedelta(minutes=2)
#: A request still unanswered this close to its claim's (and slot's) lapse is cut off, so
#: it never overlaps a request another worker sends on the slot once it lapsed.
LEASE_MARGIN = timedelta(seconds=10)
EXCERPT_BYTES = 1024
USER_AGENT = "tillpay-webhooks/1"


@dataclass
class Outcome:
    endpoint_id: str
    event_id: str
    event_type: str
    status_code: int | None = None
    latency_ms: int = 0
    excerpt: str = ""
    error: str | None = None
    #: False: nothing was sent (endpoint gone or disabled); no attempt is logged.
    attempted: bool = True


async def deliver_due(
    context: JobContext[Settings], *, now: datetime | None = None, limit: int | None = None
) -> bool:
    """Deliver one batch of due deliveries; True when it left due deliveries behind (run
    again at once). ``now`` is the clock (tests move it to reach later retries)."""
    settings = context.settings
    clock = now or utcnow()
    width = settings.worker_width
    holder = leases.new_holder()
    deadline = time.monotonic() + (CLAIM_LEASE - LEASE_MARGIN).total_seconds()
    batch = await slots.claim(
        context.database,
        holder=holder,
        per_endpoint=settings.webhooks_endpoint_concurrency,
        now=clock,
        limit=limit or width * 4,
        lease=CLAIM_LEASE,
    )
    if not batch.claims:
        return False
    gate = asyncio.Semaphore(width)  # database work; the requests all go at once
    async with httpx.AsyncClient(
        timeout=settings.webhooks_timeout_seconds,
        follow_redirects=False,
        verify=tls_context(),
        trust_env=False,
    ) as client:

        async def run(claim: slots.SlotClaim) -> None:
            booked = False
            try:
                outcome = await _attempt(
                    context.database, settings, client, claim.item, clock, gate, deadline
                )
                async with gate:
                    await _book(context.database, settings, claim, holder, outcome, now=now)
                booked = True
            finally:
                if not booked:
                    async with gate:
                        await slots.release(context.database, claim.slot, holder)

        await for_each(batch.claims, run, width=len(batch.claims))
    return batch.more


async def _attempt(
    database: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    item: dispatch.Claimed,
    now: datetime,
    gate: asyncio.Semaphore,
    deadline: float,
) -> Outcome:
    endpoint_id = service.endpoint_of(item.consumer)
    async with gate, database.read_session() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        event = await session.get(OutboxEvent, item.event_id)
        outcome = Outcome(endpoint_id, item.event_id, event.type if event else "")
        if endpoint is None or event is None or not endpoint.enabled:
            outcome.attempted = False
            outcome.error = "endpoint disabled" if endpoint is not None else "endpoint deleted"
            return outcome
        body = json.dumps(await event_payloads.payload(session, event), separators=(",", ":"))
        url = endpoint.url
        signing_secrets = service.signing_secrets(settings, endpoint, now=utcnow())
    try:
        target = await targets.check(
            url,
            allow_http=not settings.is_production,
            allow_private=settings.webhooks_allow_private_targets,
            allowed_ports=settings.webhooks_allowed_ports,
        )
    except targets.TargetRefused as refused:
        outcome.error = str(refused)
        return outcome
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": target.host if _default_port(target) else f"{target.host}:{target.port}",
        **signing.headers(item.event_id, utcnow(), body, signing_secrets),
    }
    # The checked address, not the name: DNS cannot answer differently now (rebinding).
    literal = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(max(0.0, deadline - time.monotonic())),
            client.stream(
                "POST",
                f"{target.scheme}://{literal}:{target.port}{target.path}",
                content=body.encode(),
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            outcome.status_code = response.status_code
            outcome.excerpt = await _excerpt(response)
    except (httpx.TimeoutException, TimeoutError):
        outcome.error = "timeout"
    except httpx.HTTPError as exc:
        outcome.error = f"connection failed ({type(exc).__name__})"
    outcome.latency_ms = int((time.perf_counter() - started) * 1000)
    if outcome.error is None and not 200 <= (outcome.status_code or 0) < 300:
        outcome.error = f"HTTP {outcome.status_code}"
    return outcome


def _default_port(target: targets.Target) -> bool:
    return (target.scheme, target.port) in (("https", 443), ("http", 80))


async def _excerpt(response: httpx.Response) -> str:
    """The first KiB of the answer; the rest is never read into memory."""
    kept = b""
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= EXCERPT_BYTES:
            break
    return kept[:EXCERPT_BYTES].decode("utf-8", errors="replace")


async def _book(
    database: Database,
    settings: Settings,
    claim: slots.SlotClaim,
    holder: str,
    outcome: Outcome,
    *,
    now: datetime | None,
) -> None:
    """Log the attempt, move the delivery on (delivered, retry later, or failed) and give
    its endpoint slot back, in one transaction."""
    clock = now or utcnow()
    async with database.transaction() as session:
        disabled = await _record(session, settings, claim.item, outcome, clock)
        await leases.drop(session, [claim.slot], holder)
    if disabled is None:
        return
    if disabled:
        log.error(
            "merchant_webhooks.endpoint_disabled",
            endpoint_id=outcome.endpoint_id,
            hours=settings.webhooks_disable_after_hours,
        )
    if outcome.error is not None:
        log.warning(
            "merchant_webhooks.delivery_failed",
            endpoint_id=outcome.endpoint_id,
            event_id=outcome.event_id,
            status_code=outcome.status_code,
            error=outcome.error,
        )


async def _record(
    session: AsyncSession,
    settings: Settings,
    item: dispatch.Claimed,
    outcome: Outcome,
    clock: datetime,
) -> bool | None:
    """Book ``outcome`` on the delivery and the endpoint's health: True when that
    disabled the endpoint, None when no attempt was booked (nothing sent, or the
    delivery is no longer pending)."""
    schedule = settings.webhooks_retry_schedule if outcome.attempted else [0]
    booked = await dispatch.record_outcome(
        session, item.id, error=outcome.error, schedule=schedule, now=clock
    )
    if booked is None or not outcome.attempted:
        return None
    disabled = await service.track_health(
        session,
        settings,
        outcome.endpoint_id,
        failed=outcome.error is not None,
        now=clock,
    )
    session.add(
        WebhookAttempt(
            delivery_id=item.id,
            endpoint_id=outcome.endpoint_id,
            event_id=outcome.event_id,
            event_type=outcome.event_type,
            attempted_at=clock,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
    )
    return disabled
