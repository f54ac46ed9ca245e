"""The worker's schedule: every periodic job, its name and how often it runs (seconds).

Each job's body lives with its domain. Jobs that claim their rows (``SKIP LOCKED`` + a
lease on the row) run on every worker at once and split the work; ``exclusive=True`` jobs
run on one worker at a time across all processes (a lease row, ``kit/leases.py``):
docs/architecture.md says which and why.
"""

from __future__ import annotations

from tillpay.credentials import jobs as credentials_jobs
from tillpay.customer_mail import digest as admin_digest
from tillpay.customer_mail import jobs as customer_mail_jobs
from tillpay.events import jobs as events_jobs
from tillpay.events.dispatch import Fanout, internal_only
from tillpay.hub import broker
from tillpay.hub import jobs as hub_jobs
from tillpay.hub.intake import Intake
from tillpay.kit import idempotency_jobs
from tillpay.kit.jobs import Job, JobContext
from tillpay.merchant_webhooks import delivery as merchant_webhooks
from tillpay.merchant_webhooks import service as merchant_webhook_endpoints
from tillpay.payments import jobs as payments_jobs
from tillpay.payments import webhooks
from tillpay.realtime import jobs as realtime_jobs
from tillpay.sandbox import jobs as sandbox_jobs
from tillpay.sandbox import psp
from tillpay.settings import Settings


def own_consumers(context: JobContext[Settings]) -> list[Intake]:
    """tillpay's own consumers of events: merchant webhooks, customer mail, and realtime
    when it has a bus."""
    webhooks, email = broker.DURABLE_CONSUMERS
    intakes = [
        Intake(webhooks, merchant_webhook_endpoints.fan_out, merchant_webhooks.DELIVERY_JOB),
        Intake(email, customer_mail_jobs.fan_out, customer_mail_jobs.SEND_JOB),
    ]
    realtime = realtime_jobs.fan_out_for(context)
    if realtime is not None:
        intakes.append(Intake("realtime", realtime, realtime_jobs.PUBLISH_JOB, best_effort=True))
    return intakes


def hub_consumers(context: JobContext[Settings]) -> list[Intake]:
    """The consumers that read their queue on the hub: all of tillpay's own when a broker
    is configured (``hub/intake.py``), none without one."""
    return own_consumers(context) if context.settings.broker_url is not None else []


async def relay_events(context: JobContext[Settings]) -> bool:
    """The outbox relay. Without a broker it makes every consumer's deliveries itself;
    with one it makes the hub's (publishing), and tillpay's own consumers take theirs
    from their queues on the hub, but for internal events, which never go to the hub."""
    own = [i.fanout for i in own_consumers(context)]
    hub = hub_jobs.fan_out_for(context.settings)
    fanouts: list[Fanout] = own if hub is None else [hub, *map(internal_only, own)]
    return await events_jobs.relay(
        context,
        fanouts,
        wake=(
            realtime_jobs.PUBLISH_JOB,
            merchant_webhooks.DELIVERY_JOB,
            hub_jobs.PUBLISH_JOB,
            customer_mail_jobs.SEND_JOB,
        ),
    )


SCHEDULE: tuple[Job, ...] = (
    Job(events_jobs.RELAY_JOB, 2.0, relay_events),
    Job(realtime_jobs.PUBLISH_JOB, 1.0, realtime_jobs.publish_due),
    Job(merchant_webhooks.DELIVERY_JOB, 1.0, merchant_webhooks.deliver_due),
    Job(hub_jobs.PUBLISH_JOB, 1.0, hub_jobs.publish_due),
    Job(customer_mail_jobs.SEND_JOB, 2.0, customer_mail_jobs.send_due),
    # Every minute, so the digest leaves within a minute of its time; a run that finds
    # today's digest written costs one primary-key read.
    Job(admin_digest.DIGEST_JOB, 60.0, admin_digest.write_due, exclusive=True),
    Job("idempotency.purge", 3600.0, idempotency_jobs.purge_idempotency_keys, exclusive=True),
    # Rows live five and a half minutes at most; a purge every ten keeps the table small.
    Job(
        credentials_jobs.PURGE_JOB,
        600.0,
        credentials_jobs.purge_used_service_tokens,
        exclusive=True,
    ),
    Job(webhooks.PROCESS_JOB, 1.0, payments_jobs.process_webhooks),
    Job("payments.janitor", 30.0, payments_jobs.janitor, exclusive=True),
    Job("orders.expire", 30.0, payments_jobs.expire_orders, exclusive=True),
    Job(psp.DELIVERY_JOB, 1.0, sandbox_jobs.deliver_webhooks),
)
