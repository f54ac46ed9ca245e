"""Every event type tillpay emits, what it means and what it is about (docs/events.md is
generated from this table; a test fails when code emits a type that is not here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EventType:
    name: str
    #: What ``data.object`` of the payload is: ``order``, ``payment``, ``refund`` or
    #: ``user`` (the API's public user: never a password hash, TOTP secret or token); for
    #: ``webhook_endpoint`` it is null (``data.details`` describes the endpoint).
    subject: str
    description: str
    #: The fields of ``data.details`` and what each means (documented types only).
    details: Mapping[str, str] = field(default_factory=dict)
    #: An example of ``data.details``.
    example: Mapping[str, Any] = field(default_factory=dict)
    #: Consumed inside tillpay only (mail to its administrators): never delivered to
    #: merchant webhooks, the RabbitMQ hub or realtime, and not subscribable.
    internal: bool = False


_USER_ID = {"user_id": "The user's id (`usr_…`), also `data.object.id`."}
_USER = "usr_01JF3Q8Z6W0C1V7Y5K2M4N8P9R"


#: What the events of a headless payment (``POST /v1/payments``, a shop backend's own
#: order) add to ``data.details``; absent for payments of tillpay's own orders.
_HEADLESS = {
    "kind": "`headless` for a shop backend's own order paid through `POST /v1/payments` "
    "(absent otherwise).",
    "merchant": "The merchant (shop) whose credential created the payment (headless only).",
    "reference": "The shop's own order reference, unique per merchant (headless only).",
}
_PAYMENT = {
    "payment_id": "The payment's id (`pay_…`), also `data.object.id`.",
    "order_id": "The order it pays (`ord_…`; for a headless payment, tillpay's own record "
    "of the shop's order).",
    "status": "The payment's status.",
    "amount": "Minor units.",
    "currency": "ISO 4217 code (or a crypto code for Cryptomus).",
    **_HEADLESS,
}
_PAYMENT_EXAMPLE = {
    "payment_id": "pay_01JF3Q8Z6W0C1V7Y5K2M4N8P9R",
    "order_id": "ord_01JF3Q8Z6W0C1V7Y5K2M4N8P9S",
    "status": "succeeded",
    "amount": 2599,
    "currency": "USD",
    "kind": "headless",
    "merchant": "acme",
    "reference": "order-10042",
}
_REFUND = {
    "refund_id": "The refund's id (`rfd_…`), also `data.object.id`.",
    "payment_id": "The payment refunded.",
    "amount": "Minor units.",
    "currency": "ISO 4217 code.",
    **_HEADLESS,
}
_REFUND_EXAMPLE = {
    "refund_id": "rfd_01JF3Q8Z6W0C1V7Y5K2M4N8P9T",
    "payment_id": "pay_01JF3Q8Z6W0C1V7Y5K2M4N8P9R",
    "amount": 1000,
    "currency": "USD",
    "kind": "headless",
    "merchant": "acme",
    "reference": "order-10042",
}


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("order.paid", "order", "A payment was applied: the order is paid."),
    EventType("order.fulfilled", "order", "The vendor or an admin marked the order fulfilled."),
    EventType("order.cancelled", "order", "The order was cancelled before it was paid."),
    EventType("order.expired", "order", "The order was not paid in time; its stock is released."),
    EventType("order.partially_refunded", "order", "Part of the paid amount was refunded."),
    EventType("order.refunded", "order", "The whole paid amount was refunded."),
    EventType(
        "payment.succeeded",
        "payment",
        "The provider confirmed the payment captured.",
        details=_PAYMENT,
        example=_PAYMENT_EXAMPLE,
    ),
    EventType(
        "payment.failed",
        "payment",
        "The payment failed (declined, error).",
        details={**_PAYMENT, "decline_code": "The provider's reason, when it gave one."},
        example={**_PAYMENT_EXAMPLE, "status": "failed", "decline_code": "card_declined"},
    ),
    EventType(
        "payment.canceled",
        "payment",
        "The payment was canceled before it completed (a headless payment by its shop: "
        "`POST /v1/payments/{id}/cancel`).",
        details={**_PAYMENT, "decline_code": "Why, when known (`canceled_by_merchant`)."},
        example={**_PAYMENT_EXAMPLE, "status": "canceled", "decline_code": "canceled_by_merchant"},
    ),
    EventType(
        "payment.expired",
        "payment",
        "The payer did not complete the payment in time.",
        details={**_PAYMENT, "decline_code": "The provider's reason, when it gave one."},
        example={**_PAYMENT_EXAMPLE, "status": "expired", "decline_code": None},
    ),
    EventType(
        "payment.needs_review",
        "payment",
        "Money moved that tillpay could not apply (a late success, an order already paid or "
        "no longer payable, a headless payment paid after its shop canceled it): an "
        "operator must look (refund or reconcile).",
        details={
            "payment_id": "The payment's id (`pay_…`).",
            "order_id": "The order it was for.",
            "reason": "Why it needs review (`late_success`, `order_already_paid`, "
            "`order_not_payable`, a mismatch, …).",
            **_HEADLESS,
        },
        example={
            "payment_id": "pay_01JF3Q8Z6W0C1V7Y5K2M4N8P9R",
            "order_id": "ord_01JF3Q8Z6W0C1V7Y5K2M4N8P9S",
            "reason": "order_not_payable",
            "kind": "headless",
            "merchant": "acme",
            "reference": "order-10042",
        },
    ),
    EventType(
        "payment.reviewed",
        "payment",
        "An operator cleared a payment's review flag (`POST /v1/admin/payments/{id}/review`): "
        "what `payment.needs_review` announced is dealt with. The operator's note stays in "
        "tillpay (audit trail, console).",
        details={
            "payment_id": "The payment's id (`pay_…`).",
            "order_id": "The order it was for.",
            "reason": "Why it had been flagged (as in `payment.needs_review`).",
            **_HEADLESS,
        },
        example={
            "payment_id": "pay_01JF3Q8Z6W0C1V7Y5K2M4N8P9R",
            "order_id": "ord_01JF3Q8Z6W0C1V7Y5K2M4N8P9S",
            "reason": "order_not_payable",
            "kind": "headless",
            "merchant": "acme",
            "reference": "order-10042",
        },
    ),
    EventType(
        "refund.succeeded",
        "refund",
        "The provider confirmed the refund.",
        details=_REFUND,
        example=_REFUND_EXAMPLE,
    ),
    EventType(
        "refund.failed",
        "refund",
        "The provider refused or failed the refund.",
        details=_REFUND,
        example=_REFUND_EXAMPLE,
    ),
    EventType(
        "webhook_endpoint.disabled",
        "webhook_endpoint",
        "Every delivery to an endpoint failed for `TILLPAY_WEBHOOKS_DISABLE_AFTER_HOURS`: "
        "tillpay disabled it (re-enable it with PATCH once the receiver is fixed).",
    ),
    EventType(
        "webhook_endpoint.test",
        "webhook_endpoint",
        "An administrator asked for a test delivery (`POST …/webhook-endpoints/{id}/test`): "
        "sent to that one endpoint only, whatever types it subscribed to.",
        details={
            "endpoint_id": "The endpoint tested (`whe_…`).",
            "url": "Its URL when the test was asked for.",
        },
        example={
            "endpoint_id": "whe_01JF3Q8Z6W0C1V7Y5K2M4N8P9V",
            "url": "https://shop.example/hooks",
        },
    ),
    EventType(
        "admin.digest",
        "admin_digest",
        "Once a day after `TILLPAY_ADMIN_DIGEST_TIME` (UTC): the previous UTC day's figures, "
        "mailed to every active administrator. `data.details` is the digest itself.",
        details={
            "day": "The UTC day the figures are about (`YYYY-MM-DD`).",
            "totals": "Per provider and currency: payments captured (count, amount) and "
            "refunds that succeeded (count, amount) that day, in minor units.",
            "failed_payments": "Payments that ended `failed` that day: `count` and the first "
            "`items`.",
            "needs_review": "Payments flagged for review and not cleared, whenever flagged.",
            "dead_webhook_events": "Provider webhook events that ran out of retries (`dead`), "
            "waiting for a replay.",
            "failed_webhook_deliveries": "Merchant webhook deliveries given up (`failed`), of "
            "events of the last 7 days.",
        },
        example={
            "day": "2026-12-01",
            "totals": [
                {
                    "provider": "stripe",
                    "currency": "USD",
                    "captured_count": 12,
                    "captured_amount": 48200,
                    "refunded_count": 1,
                    "refunded_amount": 1500,
                }
            ],
            "failed_payments": {"count": 0, "items": []},
            "needs_review": {"count": 0, "items": []},
            "dead_webhook_events": {"count": 0, "items": []},
            "failed_webhook_deliveries": {"count": 0},
        },
        internal=True,
    ),
    EventType(
        "user.registered",
        "user",
        "An account was created: registered (its address still to be verified) or an "
        "administrator made by `tillpay create-admin`.",
        details=_USER_ID,
        example={"user_id": _USER},
    ),
    EventType(
        "user.email_verified",
        "user",
        "The user proved an address by its link: the first one (the account's welcome) or "
        "a new one after an email change.",
        details={
            **_USER_ID,
            "first": "True for the account's first verified address (tillpay then mails the "
            "welcome).",
            "email_changed": "True when the verified address replaced an earlier one.",
        },
        example={"user_id": _USER, "first": True, "email_changed": False},
    ),
    EventType(
        "user.2fa_enabled",
        "user",
        "Two-factor authentication (TOTP) was turned on.",
        details=_USER_ID,
        example={"user_id": _USER},
    ),
    EventType(
        "user.2fa_disabled",
        "user",
        "Two-factor authentication (TOTP) was turned off.",
        details=_USER_ID,
        example={"user_id": _USER},
    ),
    EventType(
        "user.password_changed",
        "user",
        "The password was changed (signed in, with the current password) or reset (by a "
        "mailed link).",
        details={**_USER_ID, "how": "`changed` or `reset`."},
        example={"user_id": _USER, "how": "changed"},
    ),
    EventType(
        "user.new_login",
        "user",
        "A sign-in from an IP address and device (browser and system) that none of the "
        "user's earlier sessions had; an account's first sign-in is not one.",
        details={
            **_USER_ID,
            "session_id": "The new session (`ses_…`): revoke it with "
            "`DELETE /v1/auth/sessions/{id}`.",
            "ip": "The client's IP address (after trusted-proxy resolution).",
            "device": "Browser and system, coarse (from the User-Agent).",
            "mfa": "Whether the sign-in used the second factor.",
            "at": "When (RFC 3339, UTC).",
        },
        example={
            "user_id": _USER,
            "session_id": "ses_01JF3Q9A2B3C4D5E6F7G8H9J0K",
            "ip": "203.0.113.7",
            "device": "Firefox on Linux",
            "mfa": False,
            "at": "2026-12-02T14:03:11.482913Z",
        },
    ),
)

BY_NAME: dict[str, EventType] = {event.name: event for event in EVENT_TYPES}
#: The types tillpay keeps to itself (see ``EventType.internal``).
INTERNAL: frozenset[str] = frozenset(event.name for event in EVENT_TYPES if event.internal)
#: The types merchant webhooks, the hub and realtime carry (and endpoints subscribe to).
PUBLIC: tuple[EventType, ...] = tuple(event for event in EVENT_TYPES if not event.internal)


def markdown_table() -> str:
    """The catalogue as docs/events.md shows it: the table, then the ``data.details`` of
    each type that documents them."""
    rows = ["| type | `data.object` is | when |", "|---|---|---|"]
    rows += [f"| `{e.name}` | {e.subject} | {e.description} |" for e in PUBLIC]
    rows += [
        "",
        "Internal (mailed to administrators; never sent to webhooks, the hub or realtime):",
    ]
    rows += ["", "| type | when |", "|---|---|"]
    rows += [f"| `{e.name}` | {e.description} |" for e in EVENT_TYPES if e.internal]
    for event in (e for e in EVENT_TYPES if e.details):
        rows += ["", f"`{event.name}`, `data.details`:", ""]
        rows += [f"- `{name}`: {meaning}" for name, meaning in event.details.items()]
        example = json.dumps(dict(event.example), indent=2)
        rows += ["", "```json", example, "```"]
    return "\n".join(rows) + "\n"


BEGIN = "<!-- event-types:begin (generated by `tillpay event-docs`) -->"
END = "<!-- event-types:end -->"


def replace_table(document: str) -> str:
    """``document`` with the table between the markers replaced by the current one."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return f"{document[:start]}\n{markdown_table()}{document[end:]}"
