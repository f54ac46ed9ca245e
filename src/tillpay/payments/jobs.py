"""Background jobs of the payments domain: webhook processing and the janitor."""

from __future__ import annotations

from tillpay.kit.jobs import JobContext, job
from tillpay.payments import service
from tillpay.payments.runtime import PaymentsRuntime, build_payments_runtime
from tillpay.settings import Settings


def payments_runtime(context: JobContext[Settings]) -> PaymentsRuntime:
    """The worker's payments runtime, built once (the app provides its own instead)."""
    return build_payments_runtime(
        context.settings, context.database, transport=context.provider_transport
    )


@job("payments.process_webhooks", interval=1.0)
async def process_webhooks(context: JobContext[Settings]) -> None:
    await service.process_due_webhooks(context.shared(payments_runtime))


@job("payments.janitor", interval=30.0)
async def janitor(context: JobContext[Settings]) -> None:
    await service.janitor_pass(context.shared(payments_runtime))
