"""GET /v1/admin/audit-events: filters, and the NDJSON and CSV exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Account, Accounts, unique_email
from tillpay.audit.chain import entry_hash
from tillpay.audit.models import AuditEvent
from tillpay.audit.queries import AuditFilter, stream_events
from tillpay.audit.verify import verify_chain

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
URL = "/v1/admin/audit-events"


async def _arrange(accounts: Accounts) -> Account:
    """An admin, and four events at known times (added directly: chained at the flush)."""
    admin = await accounts.admin()
    events = [
        ("test.refund", "usr_a", "payment", "pay_1", T0),
        ("test.refund", "usr_b", "payment", "pay_2", T0 + timedelta(hours=1)),
        ("test.login", "usr_a", "session", "ses_1", T0 + timedelta(hours=2)),
        ("test.login", "usr_a", "payment", "pay_1", T0 + timedelta(hours=3)),
    ]
    async with accounts.database.transaction() as session:
        for action, actor, target_type, target_id, at in events:
            session.add(
                AuditEvent(
                    action=action,
                    actor_id=actor,
                    target_type=target_type,
                    target_id=target_id,
                    occurred_at=at,
                    details={"note": "=cmd", "ünï": 1},
                )
            )
    return admin


async def _page(client: httpx.AsyncClient, admin: Account, **params: str) -> list[dict[str, Any]]:
    response = await client.get(URL, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_filters_combine(client: httpx.AsyncClient, accounts: Accounts) -> None:
    admin = await _arrange(accounts)

    async def targets(**params: str) -> list[str]:
        # Sorted: ids made in one millisecond sort randomly among themselves.
        return sorted(e["target_id"] for e in await _page(client, admin, **params))

    assert await targets(action="test.refund") == ["pay_1", "pay_2"]
    assert await targets(actor_id="usr_a", action="test.login") == ["pay_1", "ses_1"]
    assert await targets(target_type="payment", target_id="pay_1") == ["pay_1", "pay_1"]
    window = {
        "from": (T0 + timedelta(hours=1)).isoformat(),
        "to": (T0 + timedelta(hours=3)).isoformat(),
    }
    assert await targets(**window, actor_id="usr_a") == ["ses_1"]
    assert await targets(**window) == ["pay_2", "ses_1"]
    naive = await client.get(URL, params={"from": "2026-11-01T12:00:00"}, headers=admin.headers)
    assert naive.status_code == 422


async def test_ndjson_streams_every_match_in_chain_order_with_its_chain_columns(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await _arrange(accounts)
    headers = {**admin.headers, "Accept": "application/x-ndjson"}
    response = await client.get(URL, params={"actor_id": "usr_a"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [e["target_id"] for e in lines] == ["pay_1", "ses_1", "pay_1"]
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    for entry in lines:  # an export can be checked away from the database
        fields = {**entry, "occurred_at": datetime.fromisoformat(entry["occurred_at"])}
        assert entry_hash(fields) == entry["hash"]
    everything = await client.get(URL, headers=headers)
    assert len(everything.text.splitlines()) == lines[-1]["seq"]


async def test_csv_streams_a_header_and_one_row_per_match(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await _arrange(accounts)
    headers = {**admin.headers, "Accept": "text/csv"}
    response = await client.get(URL, params={"action": "test.refund"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["target_id"] for r in rows] == ["pay_1", "pay_2"]
    assert rows[0]["occurred_at"] == "2026-11-01T12:00:00.000000Z"
    assert json.loads(rows[0]["details"]) == {"note": "=cmd", "ünï": 1}  # JSON, not a formula
    assert {"seq", "prev_hash", "hash"} <= set(rows[0])


async def test_the_export_needs_the_audit_permission(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    customer = await accounts.user()
    for accept in ("application/x-ndjson", "text/csv"):
        response = await client.get(URL, headers={**customer.headers, "Accept": accept})
        assert response.status_code == 403
        assert "aud_" not in response.text


async def test_the_stream_reads_in_batches(accounts: Accounts, client: httpx.AsyncClient) -> None:
    await _arrange(accounts)
    async with accounts.database.read_connection() as conn:
        rows = [r async for r in stream_events(conn, AuditFilter(actor_id="usr_a"), batch=1)]
    assert [r.target_id for r in rows] == ["pay_1", "ses_1", "pay_1"]


async def test_twenty_concurrent_audited_requests_leave_one_valid_chain(
    client: httpx.AsyncClient, accounts: Accounts, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite serialises writers; PostgreSQL's concurrency is the question")
    credentials = [{"email": unique_email("nobody"), "password": "wrong-password-1"}] * 20
    answers = await asyncio.gather(*(client.post("/v1/auth/login", json=c) for c in credentials))
    assert {a.status_code for a in answers} == {401}
    async with accounts.database.read_connection() as conn:
        report = await verify_chain(conn)
    assert report.intact
    assert report.checked == 20
