"""Background jobs of the payments domain: webhook processing and the janitor."""

from __future__ import annotations

from tillpay.payments import sync, webhooks
from tillpay.payments.runtime import PaymentsRuntime, build_payments_runtime
from tillpay.worker import JobContext, job


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
    await webhooks.process_due_webhooks(_runtime(context))


@job("payments.janitor", interval=30.0)
async def janitor(context: JobContext) -> None:
    await sync.janitor_pass(_runtime(context))
