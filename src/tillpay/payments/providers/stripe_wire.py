"""Stripe's wire vocabulary, free of I/O: amounts, object states and webhook signatures.

Amounts: tillpay counts ISO 4217 minor units; Stripe has its own table (MGA is
zero-decimal, ISK and UGX are sent with two decimals that are always ``00``, three-decimal
currencies must end in ``0``). :func:`to_stripe_amount` and :func:`from_stripe_amount` are
the only crossing points.

States: :func:`intent_state`, :func:`session_state` and :func:`refund_state` read Stripe's
objects (as plain dicts) into tillpay's :class:`ProviderState` and :class:`RefundState`.

Webhooks: ``Stripe-Signature: t=…,v1=…`` verified by the SDK (HMAC-SHA256 over
``"{t}.{raw body}"``, ``hmac.compare_digest``) against every configured secret, with the
SDK's 300-second tolerance for old timestamps plus our own bound on future ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

import stripe

from tillpay.kit.money import FIAT_EXPONENTS
from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.base import ProviderState, RefundState, tillpay_refund_id

SIGNATURE_HEADER: Final = "stripe-signature"
TOLERANCE_SECONDS: Final = 300  # Stripe's default; never lowered, never disabled
REFERENCE_KEY: Final = "tillpay_reference"

# https://docs.stripe.com/currencies: zero-decimal currencies, the currencies Stripe takes
# with two decimals although they have none (always "00"), and the three-decimal ones
# whose last digit must be 0. Everything else follows ISO 4217.
ZERO_DECIMAL: Final = frozenset(
    {
        *("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"),
        *("PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"),
    }
)
WHOLE_UNITS_TWO_DECIMAL: Final = frozenset({"ISK", "UGX"})
THREE_DECIMAL: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
MAX_AMOUNT: Final = 99_999_999  # "up to eight digits"
# Minimum charge per presentment currency, in Stripe units (docs.stripe.com/currencies).
MIN_AMOUNT: Final[Mapping[str, int]] = {
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50,
    "CZK": 1500, "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50,
    "JPY": 50, "MXN": 1000, "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200,
    "SEK": 300, "SGD": 50, "THB": 1000,
}  # fmt: skip

PAYMENT_INTENT_STATUS: Final[Mapping[str, PaymentStatus]] = {
    # requires_payment_method after a failed confirmation is "failed" (see intent_state)
    "requires_payment_method": PaymentStatus.REQUIRES_ACTION,
    "requires_confirmation": PaymentStatus.REQUIRES_ACTION,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PROCESSING,
    # tillpay captures automatically; held funds are not a payment yet
    "requires_capture": PaymentStatus.PROCESSING,
    "succeeded": PaymentStatus.SUCCEEDED,
    "canceled": PaymentStatus.CANCELED,
}
REFUND_STATUS: Final[Mapping[str, RefundStatus]] = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,  # no money went back: release the reservation
}
STRIPE_REFUND_REASONS: Final = frozenset({"duplicate", "fraudulent", "requested_by_customer"})

PAYMENT_INTENT_EVENTS: Final = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
    }
)
SESSION_EVENTS: Final = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
REFUND_EVENTS: Final = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)


# ----------------------------------------------------------------------------- amounts


def stripe_exponent(currency: str) -> int | None:
    """Digits Stripe's API uses for ``currency``; ``None`` when Stripe cannot take it."""
    iso = FIAT_EXPONENTS.get(currency)
    if iso is None:
        return None
    if currency in ZERO_DECIMAL:
        return 0
    if currency in WHOLE_UNITS_TWO_DECIMAL:
        return 2
    if iso == 3 and currency not in THREE_DECIMAL:
        return None  # IQD, LYD: not presentment currencies
    return iso


def to_stripe_amount(amount: int, currency: str) -> int:
    """tillpay minor units → Stripe's integer; ``ValueError`` when Stripe cannot express
    the amount exactly (a fraction of a zero-decimal unit, a non-zero last digit of a
    three-decimal amount)."""
    exp = stripe_exponent(currency)
    if exp is None:
        raise ValueError(f"Stripe does not take {currency}")
    shift = exp - FIAT_EXPONENTS[currency]
    scale: int = 10 ** abs(shift)
    value, remainder = (amount * scale, 0) if shift >= 0 else divmod(amount, scale)
    if remainder:
        raise ValueError(f"{amount} is not a whole amount of Stripe's {currency} unit")
    if currency in THREE_DECIMAL and value % 10:
        raise ValueError("Stripe needs three-decimal amounts to end in 0")
    return value


def from_stripe_amount(amount: object, currency: str) -> int | None:
    """Stripe's integer → tillpay minor units; ``None`` if it is not exact (e.g. 1.50 ISK),
    which the payment service treats as an amount mismatch."""
    exp = stripe_exponent(currency)
    if exp is None or not isinstance(amount, int) or isinstance(amount, bool):
        return None
    shift = FIAT_EXPONENTS[currency] - exp
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return amount * scale
    value, remainder = divmod(amount, scale)
    return None if remainder else value


# ----------------------------------------------------------------------------- states


def object_currency(obj: Mapping[str, Any]) -> str | None:
    """A Stripe object's ``currency`` in tillpay's upper case."""
    value = obj.get("currency")
    return value.upper() if isinstance(value, str) else None


def _amount(value: object, currency: str | None) -> int | None:
    return from_stripe_amount(value, currency) if currency else None


def metadata_reference(obj: Mapping[str, Any]) -> str | None:
    """The tillpay attempt reference in a Stripe object's metadata, if it carries one."""
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        value = metadata.get(REFERENCE_KEY)
        if isinstance(value, str) and value:
            return value
    return None


def _decline_code(intent: Mapping[str, Any]) -> str | None:
    error = intent.get("last_payment_error")
    if not isinstance(error, Mapping):
        return None
    code = error.get("decline_code") or error.get("code") or error.get("type")
    return str(code) if code else "payment_failed"


def intent_state(intent: Mapping[str, Any]) -> ProviderState:
    """A PaymentIntent as tillpay sees it (see the module's mapping table)."""
    provider_status = str(intent.get("status"))
    status = PAYMENT_INTENT_STATUS.get(provider_status, PaymentStatus.UNKNOWN)
    decline = _decline_code(intent)
    if provider_status == "requires_payment_method" and decline is not None:
        status = PaymentStatus.FAILED  # a confirmation was tried and declined
    currency = object_currency(intent)
    received = provider_status == "succeeded"
    return ProviderState(
        status=status,
        provider_status=provider_status,
        provider_object_id=str(intent["id"]),
        amount=_amount(intent.get("amount_received" if received else "amount"), currency),
        currency=currency,
        reference=metadata_reference(intent),
        decline_code=decline if status is PaymentStatus.FAILED else None,
        summary={
            "object": "payment_intent",
            "id": intent.get("id"),
            "status": provider_status,
            "decline_code": decline,
            "livemode": intent.get("livemode"),
        },
    )


def session_state(session: Mapping[str, Any]) -> ProviderState:
    """A Checkout Session as tillpay sees it; ``payment_intent`` may be expanded, which
    tells a delayed payment that failed (complete + unpaid + PI failed) from one that is
    still processing."""
    status_text = str(session.get("status"))
    payment_status = str(session.get("payment_status"))
    intent = session.get("payment_intent")
    intent = intent if isinstance(intent, Mapping) else None
    decline = _decline_code(intent) if intent is not None else None
    status = PaymentStatus.UNKNOWN
    if status_text == "open":
        status = PaymentStatus.REQUIRES_ACTION
    elif status_text == "expired":
        status = PaymentStatus.EXPIRED
    elif status_text == "complete":
        if payment_status in ("paid", "no_payment_required"):
            status = PaymentStatus.SUCCEEDED
        elif intent is not None and intent.get("status") != "processing":
            status = intent_state(intent).status
        else:
            status = PaymentStatus.PROCESSING  # delayed method: async_payment_* follows
    currency = object_currency(session)
    return ProviderState(
        status=status,
        provider_status=f"{status_text}/{payment_status}",
        provider_object_id=str(session["id"]),
        amount=_amount(session.get("amount_total"), currency),
        currency=currency,
        reference=metadata_reference(session) or session.get("client_reference_id"),
        redirect_url=session.get("url") if status is PaymentStatus.REQUIRES_ACTION else None,
        decline_code=decline if status is PaymentStatus.FAILED else None,
        summary={
            "object": "checkout.session",
            "id": session.get("id"),
            "status": status_text,
            "payment_status": payment_status,
            "payment_intent": intent.get("id") if intent else session.get("payment_intent"),
            "decline_code": decline,
            "livemode": session.get("livemode"),
        },
    )


def refund_state(refund: Mapping[str, Any]) -> RefundState:
    """A Stripe Refund as tillpay sees it."""
    provider_status = str(refund.get("status"))
    status = REFUND_STATUS.get(provider_status, RefundStatus.UNKNOWN)
    failure = refund.get("failure_reason")
    return RefundState(
        status=status,
        provider_refund_id=str(refund["id"]),
        amount=_amount(refund.get("amount"), object_currency(refund)),
        provider_status=provider_status,
        failure_code=(str(failure) if failure else provider_status)
        if status is RefundStatus.FAILED
        else None,
        tillpay_refund_id=tillpay_refund_id(
            (refund.get("metadata") or {}).get("tillpay_refund_id")
        ),
    )


# ----------------------------------------------------------------------------- webhooks


def _timestamp(header: str) -> int | None:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def verify_signature(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """Whether ``header`` carries a valid ``v1`` signature of ``body`` under any of
    ``secrets``, made within the last 300 seconds and not more than 300 seconds ahead.

    The SDK does the MAC (constant-time) and the staleness check against ``time.time()``;
    it accepts any future timestamp, so that bound is ours.
    """
    if not header or not secrets:
        return False
    stamp = _timestamp(header)
    if stamp is None or stamp > time.time() + TOLERANCE_SECONDS:
        return False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        return True
    return False
