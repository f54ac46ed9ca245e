"""The job context shares one collaborator per builder, and the app can provide its own."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from tillpay.kit.db import Database
from tillpay.kit.jobs import JobContext
from tillpay.worker import registered_jobs


def _context() -> JobContext[None]:
    # An engine connects only when used; these tests never use it.
    return JobContext(None, Database(create_async_engine("sqlite+aiosqlite://")))


def test_a_shared_collaborator_is_built_once_per_context() -> None:
    built: list[object] = []

    def build(context: JobContext[Any]) -> object:
        built.append(object())
        return built[-1]

    context = _context()
    assert context.shared(build) is context.shared(build) is built[0]
    assert _context().shared(build) is built[1]


def test_a_provided_collaborator_is_used_instead_of_building_one() -> None:
    def build(context: JobContext[Any]) -> str:
        raise AssertionError("not built when provided")

    context = _context()
    context.provide(build, "the app's own")
    assert context.shared(build) == "the app's own"


def test_the_schedule_lists_every_job_with_its_interval() -> None:
    schedule = {job.name: job.interval for job in registered_jobs()}
    assert schedule == {
        "events.relay": 2.0,
        "idempotency.purge": 3600.0,
        "orders.expire": 30.0,
        "payments.janitor": 30.0,
        "payments.process_webhooks": 1.0,
        "sandbox.deliver_webhooks": 1.0,
    }
