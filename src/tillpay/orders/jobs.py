"""Background jobs of the orders domain."""

from __future__ import annotations

from tillpay.kit.jobs import JobContext, job
from tillpay.kit.logging import get_logger
from tillpay.orders import service
from tillpay.settings import Settings

log = get_logger(__name__)


@job("orders.expire", interval=30.0)
async def expire_orders(context: JobContext[Settings]) -> None:
    """Expire unpaid orders past their window and release their stock."""
    async with context.database.session() as session, session.begin():
        count = await service.expire_due(session)
    if count:
        log.info("orders.expired", count=count)
