"""Every event type tillpay emits, what it means and what it is about (docs/events.md is
generated from this table; a test fails when code emits a type that is not here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventType:
    name: str
    #: What ``data.object`` of the webhook payload is: ``order``, ``payment`` or ``refund``.
    subject: str
    description: str


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("order.paid", "order", "A payment was applied: the order is paid."),
    EventType("order.fulfilled", "order", "The vendor or an admin marked the order fulfilled."),
    EventType("order.cancelled", "order", "The order was cancelled before it was paid."),
    EventType("order.expired", "order", "The order was not paid in time; its stock is released."),
    EventType("order.partially_refunded", "order", "Part of the paid amount was refunded."),
    EventType("order.refunded", "order", "The whole paid amount was refunded."),
    EventType("payment.succeeded", "payment", "The provider confirmed the payment captured."),
    EventType("payment.failed", "payment", "The payment failed (declined, error)."),
    EventType("payment.canceled", "payment", "The payment was canceled before it completed."),
    EventType("payment.expired", "payment", "The payer did not complete the payment in time."),
    EventType(
        "payment.needs_review",
        "payment",
        "Money moved that tillpay could not apply (a late success, an order already paid or "
        "no longer payable): an operator must look (refund or reconcile).",
    ),
    EventType("refund.succeeded", "refund", "The provider confirmed the refund."),
    EventType("refund.failed", "refund", "The provider refused or failed the refund."),
)

BY_NAME: dict[str, EventType] = {event.name: event for event in EVENT_TYPES}
