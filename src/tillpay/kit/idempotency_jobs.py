"""The idempotency purge: keys older than their retention are forgotten."""

from __future__ import annotations

from typing import Any

from tillpay.kit import idempotency
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger

log = get_logger(__name__)


async def purge_idempotency_keys(context: JobContext[Any]) -> None:
    """Forget idempotency keys older than their retention (72 h)."""
    async with context.database.session() as session, session.begin():
        count = await idempotency.purge_expired(session)
    if count:
        log.info("idempotency.purged", count=count)
