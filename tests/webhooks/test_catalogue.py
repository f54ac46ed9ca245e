"""The event catalogue names every event type the code emits."""

from __future__ import annotations

import re
from pathlib import Path

from tillpay.events.catalogue import BY_NAME, EVENT_TYPES
from tillpay.orders.models import OrderStatus
from tillpay.payments import state

SRC = Path(__file__).resolve().parents[2] / "src" / "tillpay"


def test_every_order_transition_and_final_payment_status_has_a_catalogued_event() -> None:
    for status in OrderStatus:
        if status is not OrderStatus.PENDING_PAYMENT:  # where orders start, never reached
            assert f"order.{status.value}" in BY_NAME, status
    for payment_status in state.FINAL:
        assert f"payment.{payment_status.value}" in BY_NAME, payment_status


def test_every_literal_event_type_emitted_in_the_code_is_catalogued() -> None:
    emitted: set[str] = set()
    for path in SRC.rglob("*.py"):
        emitted.update(re.findall(r'emit\(\s*session,\s*"([a-z_]+\.[a-z0-9_]+)"', path.read_text()))
    assert emitted, "no emit() calls found: the pattern is stale"
    assert emitted <= set(BY_NAME), emitted - set(BY_NAME)


def test_each_type_is_listed_once_about_a_known_subject() -> None:
    assert len(BY_NAME) == len(EVENT_TYPES)
    subjects = {"order", "payment", "refund", "webhook_endpoint", "user", "admin_digest"}
    assert {e.subject for e in EVENT_TYPES} <= subjects


def test_docs_events_md_holds_the_current_table() -> None:
    from tillpay.events.catalogue import replace_table

    document = (SRC.parents[1] / "docs" / "events.md").read_text(encoding="utf-8")
    assert replace_table(document) == document, "run `python3 dev.py docs`"
