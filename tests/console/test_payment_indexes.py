"""The console's review lookups stay index reads on both backends: the needs-review list
uses the partial index over flagged payments (its predicate must match what SQLAlchemy
writes, which SQLite compares literally), and a payment's deliveries are found through
its outbox events by subject."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select, text

from tests.accounts.helpers import Accounts
from tillpay.console.payments import PaymentFilter, _conditions
from tillpay.events.models import EventDelivery, OutboxEvent
from tillpay.payments.models import Payment


async def _plan(accounts: Accounts, query: Select[Any]) -> str:
    async with accounts.database.session() as session, session.begin():
        dialect = session.get_bind().dialect
        sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "sqlite":
            rows = await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
        else:
            # An empty test table would be read sequentially whatever the indexes.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            rows = await session.execute(text(f"EXPLAIN {sql}"))
        return "\n".join(str(row[-1]) for row in rows)


async def test_the_needs_review_list_reads_the_partial_index(accounts: Accounts) -> None:
    query = select(Payment).order_by(Payment.created_at.desc(), Payment.id.desc())
    for condition in _conditions(PaymentFilter(needs_review="1")):
        query = query.where(condition)
    plan = await _plan(accounts, query.limit(26))
    assert "ix_payments_needs_review_created_at_id" in plan, plan


async def test_a_payments_deliveries_are_found_by_event_subject(accounts: Accounts) -> None:
    about = or_(
        and_(OutboxEvent.subject_type == "payment", OutboxEvent.subject_id == "pay_x"),
        and_(OutboxEvent.subject_type == "refund", OutboxEvent.subject_id.in_(["rfd_x"])),
    )
    query = (
        select(EventDelivery.id)
        .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
        .where(about)
        .limit(50)
    )
    plan = await _plan(accounts, query)
    assert "ix_outbox_events_subject" in plan, plan
