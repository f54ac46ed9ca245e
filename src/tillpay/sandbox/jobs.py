"""Delivery of the sandbox's signed webhooks to tillpay's webhook endpoint."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from tillpay.kit.db import utcnow
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import tls_context
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxWebhook
from tillpay.settings import Settings

log = get_logger(__name__)

MAX_ATTEMPTS = 8


async def deliver_due(context: JobContext[Settings], *, limit: int = 20) -> int:
    """POST due webhooks; no database transaction is open during the HTTP calls."""
    settings = context.settings
    if not settings.sandbox_on:
        return 0
    async with context.database.session() as session:
        due = (
            await session.execute(
                select(SandboxWebhook.id, SandboxWebhook.body)
                .where(
                    SandboxWebhook.delivered_at.is_(None),
                    SandboxWebhook.deliver_at <= utcnow(),
                    SandboxWebhook.attempts < MAX_ATTEMPTS,
                )
                .order_by(SandboxWebhook.deliver_at)
                .limit(limit)
            )
        ).all()
    if not due:
        return 0
    base = (settings.sandbox_api_base or settings.public_base_url).rstrip("/")
    delivered = 0
    async with httpx.AsyncClient(
        base_url=base,
        timeout=10.0,
        transport=context.provider_transport,
        follow_redirects=False,
        verify=tls_context(),
    ) as client:
        for webhook_id, body in due:
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
                status = response.status_code
            except httpx.HTTPError as exc:
                log.warning("sandbox.webhook_failed", error_type=type(exc).__name__)
                status = 0
            async with context.database.session() as session, session.begin():
                row = await session.get(SandboxWebhook, webhook_id)
                if row is None:
                    continue
                row.attempts += 1
                row.last_status = status
                if 200 <= status < 300:
                    row.delivered_at = utcnow()
                    delivered += 1
                else:
                    row.deliver_at = utcnow() + timedelta(seconds=2**row.attempts)
    return delivered


async def deliver_webhooks(context: JobContext[Settings]) -> None:
    await deliver_due(context)
