"""Background jobs of the orders domain (order expiry needs payments: payments/jobs.py)."""

from __future__ import annotations

from tillpay.kit import idempotency
from tillpay.kit.logging import get_logger
from tillpay.worker import JobContext, job

log = get_logger(__name__)


@job("idempotency.purge", interval=3600.0)
async def purge_idempotency_keys(context: JobContext) -> None:
    """Forget idempotency keys older than their retention (72 h)."""
    async with context.database.session() as session, session.begin():
        count = await idempotency.purge_expired(session)
    if count:
        log.info("idempotency.purged", count=count)
