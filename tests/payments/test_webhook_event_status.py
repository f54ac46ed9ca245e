"""A stored webhook event's status is one of WebhookEventStatus: the database refuses any
other value, whoever writes it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tillpay.payments.models import WebhookEventStatus

INSERT = text(
    "INSERT INTO webhook_events (id, provider, dedupe_key, event_type, payload, received_at,"
    " status, attempts, next_attempt_at)"
    " VALUES (:id, 'sandbox', :id, 'payment.updated', '{}', CURRENT_TIMESTAMP, :status, 0,"
    " CURRENT_TIMESTAMP)"
)


async def test_the_database_refuses_an_unknown_webhook_event_status(
    client: httpx.AsyncClient,
) -> None:
    database = client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session, session.begin():
        for status in WebhookEventStatus:
            await session.execute(INSERT, {"id": f"whe_ok_{status.value}", "status": status.value})
    async with database.session() as session:
        with pytest.raises(IntegrityError):
            await session.execute(INSERT, {"id": "whe_retrying", "status": "retry"})
