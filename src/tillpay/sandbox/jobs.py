"""Delivery of the sandbox's signed webhooks to tillpay's webhook endpoint."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update

from tillpay.kit.db import Database, utcnow
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
    now = utcnow()
    async with database.session() as session, session.begin():
        due = [
            (row.id, row.body)
            for row in await session.execute(
                select(SandboxWebhook.id, SandboxWebhook.body)
                .where(
                    SandboxWebhook.delivered_at.is_(None),
                    SandboxWebhook.deliver_at <= now,
                    SandboxWebhook.attempts < MAX_ATTEMPTS,
                )
                .order_by(SandboxWebhook.deliver_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ]
        if due:
            await session.execute(
                update(SandboxWebhook)
                .where(SandboxWebhook.id.in_([webhook_id for webhook_id, _ in due]))
                .values(deliver_at=now + CLAIM_LEASE)
            )
    return due


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
    sent: list[bool] = []
    async with httpx.AsyncClient(
        base_url=base,
        timeout=10.0,
        transport=context.provider_transport,
        follow_redirects=False,
        verify=tls_context(),
    ) as client:

        async def deliver(webhook: tuple[str, str]) -> None:
            sent.append(await _deliver(context, client, *webhook))

        claimed = 0
        while max_deliveries is None or claimed < max_deliveries:
            due = await claim_due(context.database, limit=batch)
            await for_each(due, deliver, width=width)
            claimed += len(due)
            if len(due) < batch:
                break
    return sum(sent)


async def _deliver(
    context: JobContext[Settings], client: httpx.AsyncClient, webhook_id: str, body: str
) -> bool:
    """POST one webhook and record the outcome; True when tillpay took it."""
    raw = body.encode()
    try:
        response = await client.post(
            "/v1/webhooks/sandbox",
            content=raw,
            headers={
                "content-type": "application/json",
                psp.SIGNATURE_HEADER: psp.signature_header(context.settings, raw),
            },
        )
        status = response.status_code
    except httpx.HTTPError as exc:
        log.warning("sandbox.webhook_failed", error_type=type(exc).__name__)
        status = 0
    async with context.database.session() as session, session.begin():
        row = await session.get(SandboxWebhook, webhook_id, with_for_update=True)
        if row is None or row.delivered_at is not None:
            return False
        row.attempts += 1
        row.last_status = status
        if 200 <= status < 300:
            row.delivered_at = utcnow()
            return True
        row.deliver_at = utcnow() + timedelta(seconds=2**row.attempts)
        return False


async def deliver_webhooks(context: JobContext[Settings]) -> bool:
    """Deliver due sandbox webhooks; True when the run stopped with more due."""
    return await deliver_due(context, max_deliveries=DELIVERIES_PER_RUN) >= DELIVERIES_PER_RUN
