"""Imports every module that registers worker jobs."""

from tillpay.events import jobs as events_jobs
from tillpay.kit import idempotency_jobs
from tillpay.payments import jobs as payments_jobs
from tillpay.sandbox import jobs as sandbox_jobs

__all__ = ["events_jobs", "idempotency_jobs", "payments_jobs", "sandbox_jobs"]
