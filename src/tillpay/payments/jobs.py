"""Background jobs of the payments domain: webhook processing, the janitor, and order
expiry (which waits for open payments)."""

from __future__ import annotations

from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.payments import sync, webhooks
from tillpay.payments.expiry import expire_unpaid_orders
from tillpay.payments.runtime import PaymentsRuntime, build_payments_runtime
from tillpay.settings import Settings

log = get_logger(__name__)


def payments_runtime(context: JobContext[Settings]) -> PaymentsRuntime:
    """The worker's payments runtime, built once (the app provides its own instead)."""
    return build_payments_runtime(
        context.settings, context.database, transport=context.provider_transport
    )


#: Events one run of the webhook job processes before it yields to the worker loop.
WEBHOOKS_PER_RUN = 1000


async def process_webhooks(context: JobContext[Settings]) -> bool:
    """Process due webhook events. True when it found any (the worker then looks again at
    once: events arriving one by one are not left waiting an interval each)."""
    handled = await webhooks.process_due_webhooks(
        context.shared(payments_runtime), max_events=WEBHOOKS_PER_RUN
    )
    return handled > 0


async def janitor(context: JobContext[Settings]) -> None:
    await sync.janitor_pass(context.shared(payments_runtime))


async def expire_orders(context: JobContext[Settings]) -> None:
    """Expire unpaid orders past their window and release their stock."""
    async with context.database.session() as session, session.begin():
        count = await expire_unpaid_orders(session)
    if count:
        log.info("orders.expired", count=count)
