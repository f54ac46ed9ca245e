"""Delivery of the sandbox's signed webhooks to tillpay's webhook endpoint."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from tillpay.kit.db import Database, claim_due_rows, utcnow
from tillpay.kit.jobs import JobContext, for_each
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import tls_context
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxWebhook
from tillpay.settings import Settings

log = get_logger(__name__)

MAX_ATTEMPTS = 8


#: How long a claimed webhook is left to the delivery run that claimed it.
CLAIM_LEASE = timedelta(minutes=1)
#: Webhooks one run of the delivery job sends before it yields to the worker loop.
DELIVERIES_PER_RUN = 1000


async def claim_due(database: Database, *, limit: int) -> list[tuple[str, str]]:
    """Claim up to ``limit`` due webhooks (id, body) for this run: their next delivery
    moves ``CLAIM_LEASE`` ahead, so runs in other processes (which skip the rows being
    claimed) take others; a run that dies leaves them due again when the lease lapses."""
    rows = await claim_due_rows(
        database,
        SandboxWebhook,
        SandboxWebhook.deliver_at,
        (SandboxWebhook.body,),
        where=(SandboxWebhook.delivered_at.is_(None), SandboxWebhook.attempts < MAX_ATTEMPTS),
        order_by=SandboxWebhook.deliver_at,
        now=utcnow(),
        limit=limit,
        lease=CLAIM_LEASE,
    )
    return [(row[0], row[1]) for row in rows]


async def deliver_due(
    context: JobContext[Settings], *, limit: int | None = None, max_deliveries: int | None = None
) -> int:
    """POST due webhooks, ``worker_width`` at once, claiming the next batch at once while
    the last was full; no database transaction is open during the HTTP calls. Returns how
    many were delivered."""
    settings = context.settings
    if not settings.sandbox_on:
        return 0
    width = settings.worker_width
    batch = limit or width * 4
    base = (settings.sandbox_api_base or settings.public_base_url).rstrip("/")
    delivered = claimed = 0
    async with httpx.AsyncClient(
        base_url=base,
        timeout=10.0,
        transport=context.provider_transport,
        follow_redirects=False,
        verify=tls_context(),
    ) as client:
        while max_deliveries is None or claimed < max_deliveries:
            due = await claim_due(context.database, limit=batch)
            outcomes: dict[str, int] = {}

            async def post(webhook: tuple[str, str], outcomes: dict[str, int] = outcomes) -> None:
                outcomes[webhook[0]] = await _post(settings, client, webhook[1])

            await for_each(due, post, width=width)
            delivered += await _record(context.database, outcomes)
            claimed += len(due)
            if len(due) < batch:
                break
    return delivered


async def _post(settings: Settings, client: httpx.AsyncClient, body: str) -> int:
    """POST one webhook; the HTTP status (0 when tillpay could not be reached)."""
    raw = body.encode()
    try:
        response = await client.post(
            "/v1/webhooks/sandbox",
            content=raw,
            headers={
                "content-type": "application/json",
                psp.SIGNATURE_HEADER: psp.signature_header(settings, raw),
            },
        )
    except httpx.HTTPError as exc:
        log.warning("sandbox.webhook_failed", error_type=type(exc).__name__)
        return 0
    return response.status_code


async def _record(database: Database, outcomes: dict[str, int]) -> int:
    """Record a batch's outcomes in one transaction: the webhooks tillpay took are
    delivered, the others are due again after their backoff. Returns how many were
    delivered (by this run: a row already delivered is left alone)."""
    taken: dict[int, list[str]] = {}
    refused: list[str] = []
    for webhook_id, status in sorted(outcomes.items()):
        if 200 <= status < 300:
            taken.setdefault(status, []).append(webhook_id)
        else:
            refused.append(webhook_id)
    now = utcnow()
    delivered = 0
    async with database.session() as session, session.begin():
        for status, ids in taken.items():
            result = await session.execute(
                update(SandboxWebhook)
                .where(SandboxWebhook.id.in_(ids), SandboxWebhook.delivered_at.is_(None))
                .values(attempts=SandboxWebhook.attempts + 1, last_status=status, delivered_at=now)
                .returning(SandboxWebhook.id)
            )
            delivered += len(result.all())
        for webhook_id in refused:
            row = await session.get(SandboxWebhook, webhook_id, with_for_update=True)
            if row is None or row.delivered_at is not None:
                continue
            row.attempts += 1
            row.last_status = outcomes[webhook_id]
            row.deliver_at = now + timedelta(seconds=2**row.attempts)
    return delivered


async def deliver_webhooks(context: JobContext[Settings]) -> bool:
    """Deliver due sandbox webhooks; True when it delivered any (the worker then looks
    again at once)."""
    return await deliver_due(context, max_deliveries=DELIVERIES_PER_RUN) > 0
