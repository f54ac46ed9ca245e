"""Paystack's wire vocabulary, free of I/O: references, amounts, statuses and signatures.

The rules are pinned by known-answer tests (docs/providers/paystack.md):

- amounts are integers in the currency's subunit (kobo, pesewas, cents);
- ``reference`` may only hold letters, digits, ``-``, ``.`` and ``=``, so tillpay's attempt
  reference ``{payment_id}_{attempt_no}`` travels with ``_`` written as ``-``
  (:func:`paystack_reference`); tillpay ids never contain ``-``, so the mapping is exact;
- a refund has no idempotency key, so it carries :func:`refund_marker` as its
  ``merchant_note``, which names the tillpay refund;
- webhooks: ``x-paystack-signature`` is the hex HMAC-SHA512 of the raw body keyed with the
  secret key; there is no timestamp and no event id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Final

from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.base import ProviderState, RefundState, tillpay_refund_id

__all__ = [
    "PAYMENT_STATUS",
    "REFUND_EVENTS",
    "REFUND_STATUS",
    "SIGNATURE_HEADER",
    "paystack_reference",
    "refund_marker",
    "refund_state",
    "subunit_amount",
    "tillpay_reference",
    "transaction_state",
    "verify_signature",
    "webhook_signature",
]

SIGNATURE_HEADER: Final = "x-paystack-signature"

# Paystack transaction status → (tillpay attempt status, review reason). A review reason
# flags the payment for a person (see ProviderState.needs_review).
PAYMENT_STATUS: Final[Mapping[str, tuple[PaymentStatus, str | None]]] = {
    "success": (PaymentStatus.SUCCEEDED, None),
    "failed": (PaymentStatus.FAILED, None),
    # What verify reports for a transaction the payer has not completed yet; tillpay's own
    # order deadline ends it.
    "abandoned": (PaymentStatus.REQUIRES_ACTION, None),
    "ongoing": (PaymentStatus.PROCESSING, None),
    "pending": (PaymentStatus.PROCESSING, None),
    "processing": (PaymentStatus.PROCESSING, None),
    "queued": (PaymentStatus.PROCESSING, None),
    # Money came and went back (a reversal): never fulfil; a person looks at it.
    "reversed": (PaymentStatus.FAILED, "reversed_at_provider"),
}
REFUND_STATUS: Final[Mapping[str, RefundStatus]] = {
    "pending": RefundStatus.PENDING,
    "processing": RefundStatus.PENDING,
    # Paystack needs the customer's bank details (dashboard or retry endpoint); the money
    # has not moved yet, so the refund stays pending while the janitor keeps polling.
    "needs-attention": RefundStatus.PENDING,
    "processed": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
}
REFUND_EVENTS: Final = frozenset(
    {
        "refund.pending",
        "refund.processing",
        "refund.processed",
        "refund.failed",
        "refund.needs-attention",
    }
)

_OUR_REFERENCE: Final = re.compile(r"[a-z]{2,8}_[0-9A-Z]{26}_[0-9]{1,9}")
_THEIR_REFERENCE: Final = re.compile(r"[a-z]{2,8}-[0-9A-Z]{26}-[0-9]{1,9}")


def webhook_signature(body: bytes, secret_key: str) -> str:
    """The ``x-paystack-signature`` value Paystack sends for ``body``."""
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def verify_signature(body: bytes, signature: str | None, secret_key: str) -> bool:
    """Constant-time check of an ``x-paystack-signature`` over the raw body."""
    if not signature or not signature.isascii():
        return False
    return hmac.compare_digest(webhook_signature(body, secret_key), signature)


def paystack_reference(reference: str) -> str:
    """tillpay's attempt reference as Paystack accepts it (``_`` → ``-``)."""
    if not _OUR_REFERENCE.fullmatch(reference):
        raise ValueError(f"not a tillpay attempt reference: {reference!r}")
    return reference.replace("_", "-")


def tillpay_reference(reference: str) -> str | None:
    """The tillpay attempt reference behind a Paystack reference; ``None`` for references
    tillpay did not make (other integrations on the same Paystack account)."""
    if not _THEIR_REFERENCE.fullmatch(reference):
        return None
    return reference.replace("-", "_")


def subunit_amount(value: Any) -> int | None:
    """Paystack's samples send amounts as numbers or digit strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _code(text: Any, default: str) -> str:
    """A short machine code from Paystack's free text ("Insufficient Funds" →
    ``insufficient_funds``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", str(text or "").lower()).strip("_")
    return slug[:64] or default


def refund_marker(refund_id: str) -> str:
    """The ``merchant_note`` naming a tillpay refund (Paystack has no idempotency key)."""
    return f"tillpay refund {refund_id}"


def transaction_state(data: Mapping[str, Any]) -> ProviderState:
    """A ``transaction/verify`` answer as tillpay sees it."""
    provider_status = str(data.get("status"))
    status, review = PAYMENT_STATUS.get(provider_status, (PaymentStatus.UNKNOWN, None))
    raw_reference = str(data.get("reference") or "")
    # A reference tillpay did not make is reported as is, so it can never match.
    reference = tillpay_reference(raw_reference) or raw_reference
    authorization = data.get("authorization")
    card = authorization if isinstance(authorization, dict) else {}
    currency = data.get("currency")
    return ProviderState(
        status=status,
        provider_status=provider_status,
        provider_object_id=str(data["id"]) if data.get("id") is not None else None,
        amount=subunit_amount(data.get("amount")),
        currency=str(currency).upper() if currency else None,
        reference=reference,
        decline_code=(
            _code(data.get("gateway_response"), "declined")
            if status is PaymentStatus.FAILED
            else None
        ),
        needs_review=review,
        # Never the authorization_code (a reusable card token) or the customer.
        summary={
            "status": provider_status,
            "gateway_response": data.get("gateway_response"),
            "channel": data.get("channel"),
            "card_brand": card.get("brand"),
            "card_last4": card.get("last4"),
        },
    )


def refund_state(data: Mapping[str, Any]) -> RefundState:
    """A Paystack refund (created, fetched or listed) as tillpay sees it."""
    provider_status = str(data.get("status"))
    status = REFUND_STATUS.get(provider_status, RefundStatus.UNKNOWN)
    return RefundState(
        status=status,
        provider_refund_id=str(data["id"]) if data.get("id") is not None else None,
        amount=subunit_amount(data.get("amount")),
        provider_status=provider_status,
        failure_code="refund_failed" if status is RefundStatus.FAILED else None,
        tillpay_refund_id=tillpay_refund_id(
            str(data.get("merchant_note") or "").removeprefix(refund_marker(""))
        ),
    )
