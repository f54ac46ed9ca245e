"""The worker's schedule: every periodic job, its name and how often it runs (seconds).

Each job's body lives with its domain; whether a run overlaps another process's run is
each job's own concern (row locks, ``SKIP LOCKED``), not the schedule's.
"""

from __future__ import annotations

from tillpay.events import jobs as events_jobs
from tillpay.kit import idempotency_jobs
from tillpay.kit.jobs import Job
from tillpay.payments import jobs as payments_jobs
from tillpay.payments import webhooks
from tillpay.sandbox import jobs as sandbox_jobs
from tillpay.sandbox import psp

SCHEDULE: tuple[Job, ...] = (
    Job("events.relay", 2.0, events_jobs.relay),
    Job("idempotency.purge", 3600.0, idempotency_jobs.purge_idempotency_keys),
    Job(webhooks.PROCESS_JOB, 1.0, payments_jobs.process_webhooks),
    Job("payments.janitor", 30.0, payments_jobs.janitor),
    Job("orders.expire", 30.0, payments_jobs.expire_orders),
    Job(psp.DELIVERY_JOB, 1.0, sandbox_jobs.deliver_webhooks),
)
