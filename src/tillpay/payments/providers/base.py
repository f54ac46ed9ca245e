"""The provider adapter protocol and the normalised values adapters exchange with tillpay.

An adapter turns tillpay's intent ("charge this order this amount") into the provider's
wire protocol and the provider's answers back into :class:`ProviderState`. Everything that
leaves an adapter is normalised; nothing provider-specific leaks into the payment service.

Outcome rules every adapter follows:
- a definitive decline → ``ProviderDeclined`` (the attempt fails);
- a timeout, connection error or 5xx after the request may have reached the provider →
  ``ProviderUnavailable`` (the attempt becomes ``unknown``; the janitor finds out later);
- a provider error that certainly did nothing (4xx validation, auth) → ``ProviderError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tillpay.kit.ids import id_pattern
from tillpay.kit.outbound import ProviderDeclined, ProviderError, ProviderUnavailable
from tillpay.payments.models import PaymentStatus, RefundStatus

__all__ = [
    "CreateRequest",
    "ProviderAdapter",
    "ProviderDeclined",
    "ProviderError",
    "ProviderState",
    "ProviderUnavailable",
    "RefundState",
    "WebhookNotice",
]


@dataclass(frozen=True)
class CreateRequest:
    """What tillpay asks a provider to charge."""

    reference: str  # {payment_id}_{attempt_no}: unique per attempt, our idempotency anchor
    payment_id: str
    order_id: str
    amount: int
    currency: str
    customer_email: str | None
    return_url: str  # tillpay's own /v1/payments/{id}/return (never the client's)
    description: str


@dataclass(frozen=True)
class ProviderState:
    """The provider's view of one attempt, normalised."""

    status: PaymentStatus
    provider_status: str
    provider_object_id: str | None
    amount: int | None
    currency: str | None
    reference: str | None
    redirect_url: str | None = None
    client_data: Mapping[str, Any] = field(default_factory=dict)
    decline_code: str | None = None
    occurred_at: datetime | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    # A review reason when the provider's outcome needs a person (over- or underpaid,
    # funds held): the payment service flags the payment and never applies it as a success.
    needs_review: str | None = None


@dataclass(frozen=True)
class RefundState:
    status: RefundStatus
    provider_refund_id: str | None
    amount: int | None
    provider_status: str
    failure_code: str | None = None
    # The tillpay refund id the provider keeps with the refund (metadata, note, idempotency
    # key); None for a refund made outside tillpay, or where the provider keeps none.
    tillpay_refund_id: str | None = None


REFUND_ID_PATTERN = re.compile(id_pattern("rfd"))


def tillpay_refund_id(text: object) -> str | None:
    """``text`` when it is a well-formed tillpay refund id, else None."""
    return text if isinstance(text, str) and REFUND_ID_PATTERN.fullmatch(text) else None


# The width of webhook_events.reference; tillpay's own references are far shorter.
REFERENCE_MAX_LENGTH = 128


def _storable(text: str) -> bool:
    """Text every backend stores: valid UTF-8 (no lone surrogates) without NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook, reduced to what tillpay needs. It is a hint: the payment
    service re-reads the provider before acting whenever the provider allows."""

    dedupe_key: str
    event_type: str
    kind: str  # "payment" or "refund"
    reference: str | None
    provider_object_id: str | None
    status: PaymentStatus | None = None
    refund_status: RefundStatus | None = None
    provider_refund_id: str | None = None
    amount: int | None = None
    currency: str | None = None

    def __post_init__(self) -> None:
        # Adapters copy fields out of provider JSON; a signed body with the wrong types or
        # unstorable text must be refused as malformed (400), not fail in the database.
        texts = {"dedupe_key": self.dedupe_key, "event_type": self.event_type}
        optional = {
            "reference": self.reference,
            "provider_object_id": self.provider_object_id,
            "provider_refund_id": self.provider_refund_id,
            "currency": self.currency,
        }
        for name, value in {**texts, **optional}.items():
            if value is None and name in optional:
                continue
            if not isinstance(value, str) or not _storable(value):
                raise ValueError(f"webhook field {name} is not storable text")
        if self.kind not in ("payment", "refund"):
            raise ValueError("webhook kind must be payment or refund")
        if self.reference is not None and len(self.reference) > REFERENCE_MAX_LENGTH:
            raise ValueError("webhook reference is too long")
        if self.amount is not None and (
            isinstance(self.amount, bool) or not isinstance(self.amount, int)
        ):
            raise ValueError("webhook amount must be an integer")


class ProviderAdapter(Protocol):
    """What every provider implements."""

    name: str

    def currencies(self) -> list[str]:
        """The currencies this provider is configured to accept (sorted)."""
        ...

    def supports(self, currency: str, amount: int) -> bool:
        """Whether this provider can charge ``amount`` in ``currency``."""
        ...

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        """Create the provider object (session, transaction, order, invoice)."""
        ...

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        """Read the attempt's current state from the provider (the source of truth)."""
        ...

    async def refund(
        self,
        *,
        refund_id: str,
        provider_object_id: str,
        reference: str,
        amount: int,
        currency: str,
        reason: str,
    ) -> RefundState:
        """Refund part or all of a captured attempt; ``refund_id`` keys idempotency."""
        ...

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState: ...

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        """The attempt reference of the payment a refund event is about, read from the
        provider, for an event that names neither the reference nor the object tillpay
        stored (Stripe: a dashboard refund names only the PaymentIntent of a Checkout
        Session). None when the provider knows no tillpay reference for it."""
        ...

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        """Every refund the provider holds for the attempt, for a refund event that names
        no refund (Paystack's refund events often carry no refund id). Adapters whose
        events always name the refund raise ``ProviderError("refund_id_unknown")``."""
        ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Authenticate a webhook over its raw bytes (constant-time)."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        """Normalise a verified webhook; ``None`` for event types tillpay ignores."""
        ...
