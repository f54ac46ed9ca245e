"""Background jobs of the payments domain: webhook processing, the janitor, and order
expiry (which waits for open payments)."""

from __future__ import annotations

from tillpay.kit.logging import get_logger
from tillpay.payments import service
from tillpay.payments.expiry import expire_unpaid_orders
from tillpay.payments.runtime import PaymentsRuntime, build_payments_runtime
from tillpay.worker import JobContext, job

log = get_logger(__name__)


def _runtime(context: JobContext) -> PaymentsRuntime:
    runtime = context.extras.get("payments")
    if runtime is None:
        runtime = build_payments_runtime(
            context.settings, context.database, transport=context.extras.get("provider_transport")
        )
        context.extras["payments"] = runtime
    return runtime


@job("payments.process_webhooks", interval=1.0)
async def process_webhooks(context: JobContext) -> None:
    await service.process_due_webhooks(_runtime(context))


@job("payments.janitor", interval=30.0)
async def janitor(context: JobContext) -> None:
    await service.janitor_pass(_runtime(context))


@job("orders.expire", interval=30.0)
async def expire_orders(context: JobContext) -> None:
    """Expire unpaid orders past their window and release their stock."""
    async with context.database.session() as session, session.begin():
        count = await expire_unpaid_orders(session)
    if count:
        log.info("orders.expired", count=count)
