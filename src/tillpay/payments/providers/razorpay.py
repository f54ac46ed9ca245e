"""Adapter for Razorpay: Orders API + Checkout, spoken as REST over httpx.

Flow: tillpay creates a Razorpay order (``receipt`` = the attempt reference) and hands the
client the Checkout data (key id, order id, amount, currency). The browser pays in
Razorpay's Checkout and posts ``razorpay_order_id|razorpay_payment_id`` with its
signature to tillpay's callback route (``razorpay_routes``), which verifies it and then
syncs with the API: neither the callback nor a webhook is ever trusted alone; the order
and its payments read from the API are the truth.

The official SDK is synchronous (``requests``), so it is not used: see
docs/providers/razorpay.md for that choice and for the status mapping tables below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from tillpay.kit.money import exponent, is_fiat_currency
from tillpay.kit.outbound import ProviderClient, ProviderError, ProviderUnavailable
from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.base import (
    CreateRequest,
    ProviderState,
    RefundState,
    WebhookNotice,
    tillpay_refund_id,
)
from tillpay.settings import Settings

__all__ = [
    "ORDER_STATUS",
    "PAYMENT_STATUS",
    "REFUND_STATUS",
    "RazorpayAdapter",
    "captured_payment",
    "checkout_signature",
    "order_state",
    "webhook_signature",
]

SIGNATURE_HEADER: Final = "x-razorpay-signature"
EVENT_ID_HEADER: Final = "x-razorpay-event-id"
MAX_RECEIPT: Final = 40
# The smallest charge Razorpay accepts, where its docs state one ("at least INR 1.00").
MIN_AMOUNT: Final = {"INR": 100}

# Order status → attempt status, used when the order has no payment to say more.
ORDER_STATUS: Final = {
    "created": PaymentStatus.REQUIRES_ACTION,
    "attempted": PaymentStatus.PROCESSING,
    "paid": PaymentStatus.SUCCEEDED,
}
# A payment's status as a webhook reports it (a hint only: the attempt's state always comes
# from ``order_state`` over the API's answer). ``authorized`` is not money yet (Razorpay
# captures automatically by default); ``failed`` may still become ``captured`` (late
# authorisation), which the payment service accepts only when confirmed, and flags.
PAYMENT_STATUS: Final = {
    "created": PaymentStatus.PROCESSING,
    "authorized": PaymentStatus.PROCESSING,
    "captured": PaymentStatus.SUCCEEDED,
    "refunded": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
}
REFUND_STATUS: Final = {
    "pending": RefundStatus.PENDING,
    "processed": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
}
PAYMENT_EVENTS: Final = frozenset({"payment.captured", "payment.failed", "order.paid"})
REFUND_EVENTS: Final = frozenset({"refund.processed", "refund.failed"})

_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OBJECT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _hmac_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def checkout_signature(key_secret: bytes, order_id: str, payment_id: str) -> str:
    """The Checkout signature: hex HMAC-SHA256 of ``order_id|payment_id`` keyed with the API
    key secret."""
    return _hmac_hex(key_secret, f"{order_id}|{payment_id}".encode())


def webhook_signature(webhook_secret: bytes, body: bytes) -> str:
    """``X-Razorpay-Signature``: hex HMAC-SHA256 of the raw body keyed with the webhook secret."""
    return _hmac_hex(webhook_secret, body)


def _verify(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def captured_payment(payments: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The payment that moved money, if any."""
    for payment in payments:
        # ``refunded`` keeps ``captured: true`` when the money had been captured; an
        # authorisation Razorpay refunds automatically was never captured.
        if payment.get("status") in ("captured", "refunded") and payment.get("captured"):
            return payment
    return None


def order_state(order: Mapping[str, Any], payments: Sequence[Mapping[str, Any]]) -> ProviderState:
    """An attempt's state from its Razorpay order and the order's payments (the mapping
    table in docs/providers/razorpay.md)."""
    order_status = str(order.get("status"))
    latest = max(payments, key=lambda p: int(p.get("created_at") or 0), default=None)
    captured = captured_payment(payments)
    payment = captured or latest
    if captured is not None:
        status = PaymentStatus.SUCCEEDED
    elif any(p.get("status") in ("created", "authorized") for p in payments):
        status = PaymentStatus.PROCESSING
    elif latest is not None:
        # failed, or an uncaptured authorisation Razorpay refunded: no money either way.
        failed = latest.get("status") in ("failed", "refunded")
        status = PaymentStatus.FAILED if failed else PaymentStatus.PROCESSING
    else:
        status = ORDER_STATUS.get(order_status, PaymentStatus.UNKNOWN)
        if status is PaymentStatus.SUCCEEDED:
            # "paid" without a captured payment to show for it: look again later.
            status = PaymentStatus.PROCESSING
    decline = None
    if status is PaymentStatus.FAILED and payment is not None:
        decline = str(payment.get("error_reason") or payment.get("error_code") or "failed")
    provider_status = order_status
    if payment is not None:
        provider_status = f"{order_status}/{payment.get('status')}"
    # Money facts come from the captured payment (what was paid), else from the order.
    source = captured or order
    return ProviderState(
        status=status,
        provider_status=provider_status[:64],
        provider_object_id=str(order["id"]),
        amount=int(source["amount"]) if source.get("amount") is not None else None,
        currency=str(source["currency"]) if source.get("currency") else None,
        reference=str(order["receipt"]) if order.get("receipt") else None,
        decline_code=decline[:64] if decline else None,
        summary={
            "order_status": order_status,
            "payment_id": payment.get("id") if payment else None,
            "payment_status": payment.get("status") if payment else None,
            "method": payment.get("method") if payment else None,
            "error_code": payment.get("error_code") if payment else None,
            "error_reason": payment.get("error_reason") if payment else None,
        },
    )


class RazorpayAdapter:
    """Razorpay's Orders API; see the module docstring."""

    name = "razorpay"

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if not (
            settings.razorpay_key_id
            and settings.razorpay_key_secret
            and settings.razorpay_webhook_secret
        ):
            raise ValueError("Razorpay needs a key id, a key secret and a webhook secret")
        self.key_id = settings.razorpay_key_id
        self._key_secret = settings.razorpay_key_secret.get_secret_value().encode()
        self._webhook_secrets = [
            secret.get_secret_value().encode()
            for secret in (
                settings.razorpay_webhook_secret,
                settings.razorpay_previous_webhook_secret,
            )
            if secret is not None and secret.get_secret_value()
        ]
        self._currencies = sorted(
            {
                code.upper()
                for code in settings.razorpay_currencies
                if is_fiat_currency(code.upper())
            }
        )
        self._public_base_url = settings.public_base_url.rstrip("/")
        basic = base64.b64encode(
            f"{self.key_id}:{settings.razorpay_key_secret.get_secret_value()}".encode()
        ).decode()
        self.client = ProviderClient(
            "razorpay",
            settings.razorpay_api_base.rstrip("/") + "/v1",
            timeout=settings.razorpay_timeout_seconds or settings.provider_timeout_seconds,
            headers={"Authorization": f"Basic {basic}"},
            transport=transport,
        )

    # ------------------------------------------------------------------------- capabilities

    def currencies(self) -> list[str]:
        return list(self._currencies)

    def supports(self, currency: str, amount: int) -> bool:
        currency = currency.upper()
        if currency not in self._currencies or amount < MIN_AMOUNT.get(currency, 1):
            return False
        # Three-decimal currencies (KWD, BHD, OMR): Razorpay wants the last digit to be 0.
        return not (exponent(currency) == 3 and amount % 10)

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------------- signatures

    def verify_checkout_signature(self, *, order_id: str, payment_id: str, signature: str) -> bool:
        """Check the signature Checkout hands the browser. ``order_id`` must be the one
        tillpay saved, never the one the browser sent."""
        return _verify(checkout_signature(self._key_secret, order_id, payment_id), signature)

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        given = headers.get(SIGNATURE_HEADER)
        if given is None or not _HEX64.fullmatch(given):
            return False
        # Every configured secret is tried: Razorpay retries old events with the old one.
        results = [_verify(webhook_signature(s, body), given) for s in self._webhook_secrets]
        return any(results)

    # ------------------------------------------------------------------------- HTTP helpers

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ProviderUnavailable("razorpay: malformed response") from None
        if not isinstance(data, dict):
            raise ProviderUnavailable("razorpay: malformed response")
        return data

    @classmethod
    def _error(cls, response: httpx.Response) -> ProviderError:
        """Razorpay's ``{"error": {"code", "description", "reason", ...}}`` as a ProviderError."""
        if response.status_code == 401:
            return ProviderError("razorpay_auth_failed")
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, dict):
            error = {}
        description = str(error.get("description") or "")
        if "does not exist" in description or "is not a valid id" in description:
            return ProviderError("not_found", description[:200])
        reason = error.get("reason")
        code = reason if reason and reason != "NA" else error.get("code")
        return ProviderError(
            f"razorpay_{code or response.status_code}".lower()[:64], description[:200]
        )

    async def _get(self, path: str) -> dict[str, Any]:
        response = await self.client.request("GET", path, retry_safe=True)
        if response.status_code >= 400:
            raise self._error(response)
        return self._json(response)

    # ------------------------------------------------------------------------- payments

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        if len(request.reference) > MAX_RECEIPT:
            raise ProviderError("reference_too_long")
        # Orders have no idempotency key and Razorpay does not promise to refuse a repeated
        # receipt, so creation is never retried here; a lost answer leaves the attempt
        # unknown and ``retrieve`` finds the order by its receipt.
        response = await self.client.request(
            "POST",
            "/orders",
            json={
                "amount": request.amount,
                "currency": request.currency,
                "receipt": request.reference,
                "notes": {
                    "tillpay_payment_id": request.payment_id,
                    "tillpay_order_id": request.order_id,
                },
            },
            retry_safe=False,
        )
        if response.status_code >= 400:
            raise self._error(response)
        order = self._json(response)
        state = order_state(order, [])
        client_data = {
            "key_id": self.key_id,
            "order_id": str(order["id"]),
            "amount": int(order["amount"]),
            "currency": str(order["currency"]),
            "description": request.description[:255],
            "verify_url": f"{self._public_base_url}/v1/payments/{request.payment_id}"
            "/razorpay/callback",
        }
        return ProviderState(
            status=state.status,
            provider_status=state.provider_status,
            provider_object_id=state.provider_object_id,
            amount=state.amount,
            currency=state.currency,
            reference=state.reference,
            redirect_url=None,
            client_data=client_data,
            summary=state.summary,
        )

    async def _find_order(self, reference: str) -> dict[str, Any]:
        """The order whose receipt is ``reference`` (after a create whose answer was lost)."""
        found = await self._get("/orders?" + urlencode({"receipt": reference, "count": 100}))
        items = [
            o
            for o in found.get("items") or []
            if isinstance(o, dict) and o.get("receipt") == reference  # the filter may match parts
        ]
        if not items:
            raise ProviderError("not_found")
        # Only a duplicate create makes several; a paid one wins, then the newest.
        items.sort(key=lambda o: (o.get("status") == "paid", int(o.get("created_at") or 0)))
        return items[-1]

    async def _order_and_payments(
        self, *, reference: str, provider_object_id: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if provider_object_id:
            if not _OBJECT_ID.fullmatch(provider_object_id):
                raise ProviderError("not_found")
            order = await self._get(f"/orders/{provider_object_id}")
        else:
            order = await self._find_order(reference)
        listed = await self._get(f"/orders/{order['id']}/payments")
        payments = [p for p in listed.get("items") or [] if isinstance(p, dict)]
        return order, payments

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        order, payments = await self._order_and_payments(
            reference=reference, provider_object_id=provider_object_id
        )
        return order_state(order, payments)

    # ------------------------------------------------------------------------- refunds

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
        _, payments = await self._order_and_payments(
            reference=reference, provider_object_id=provider_object_id or None
        )
        captured = captured_payment(payments)
        if captured is None:
            raise ProviderError("razorpay_not_captured")
        response = await self.client.request(
            "POST",
            f"/payments/{captured['id']}/refund",
            json={
                "amount": amount,
                "speed": "normal",
                "receipt": refund_id[:MAX_RECEIPT],
                "notes": {"tillpay_refund_id": refund_id, "reason": reason[:256]},
            },
            # Same key, same body on every retry: Razorpay answers with the first refund.
            headers={"X-Refund-Idempotency": f"tp_{refund_id}"},
            retry_safe=True,
        )
        if response.status_code == 409:
            # The first request with this key is still running there: outcome unknown.
            raise ProviderUnavailable("razorpay: refund in progress")
        if response.status_code >= 400:
            raise self._error(response)
        return self._refund_state(self._json(response))

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        return None  # refund events carry the payment's order id

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        raise ProviderError("refund_id_unknown")  # its refund events name the refund

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState:
        if provider_refund_id is None or not _OBJECT_ID.fullmatch(provider_refund_id):
            # Replaying the create with the same idempotency key returns the original.
            raise ProviderError("refund_id_unknown")
        return self._refund_state(await self._get(f"/refunds/{provider_refund_id}"))

    @staticmethod
    def _refund_state(data: Mapping[str, Any]) -> RefundState:
        status = str(data.get("status"))
        return RefundState(
            status=REFUND_STATUS.get(status, RefundStatus.UNKNOWN),
            provider_refund_id=str(data["id"]),
            amount=int(data["amount"]) if data.get("amount") is not None else None,
            provider_status=status,
            failure_code="razorpay_refund_failed" if status == "failed" else None,
            # Razorpay sends empty notes as a list.
            tillpay_refund_id=tillpay_refund_id(notes.get("tillpay_refund_id"))
            if isinstance(notes := data.get("notes"), dict)
            else None,
        )

    # ------------------------------------------------------------------------- webhooks

    @staticmethod
    def _entity(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        wrapper = payload.get(name)
        entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
        return entity if isinstance(entity, dict) else {}

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        """Normalise a verified event. Works without headers (the worker re-parses the stored
        body with none): the dedupe key is then derived from the body."""
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("not a Razorpay event")
        name = str(event.get("event") or "")
        raw_payload = event.get("payload")
        payload: Mapping[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        payment = self._entity(payload, "payment")
        order = self._entity(payload, "order")
        refund = self._entity(payload, "refund")
        event_id = headers.get(EVENT_ID_HEADER)
        if event_id is not None and _EVENT_ID.fullmatch(event_id):
            dedupe = f"event:{event_id}"
        else:
            subject = refund if name in REFUND_EVENTS else payment or order
            dedupe = ":".join(
                str(part)
                for part in (
                    "body",
                    name,
                    order.get("id") or payment.get("order_id") or "",
                    payment.get("id") or "",
                    refund.get("id") or "",
                    subject.get("status") or "",
                    event.get("created_at") or "",
                )
            )
        if name in PAYMENT_EVENTS:
            receipt = order.get("receipt")
            return WebhookNotice(
                dedupe_key=dedupe,
                event_type=name,
                kind="payment",
                # order.paid carries our receipt; payment.* events only the order id.
                reference=str(receipt) if receipt else None,
                provider_object_id=payment.get("order_id") or order.get("id"),
                status=PAYMENT_STATUS.get(str(payment.get("status"))),
                amount=payment.get("amount"),
                currency=payment.get("currency"),
            )
        if name in REFUND_EVENTS:
            return WebhookNotice(
                dedupe_key=dedupe,
                event_type=name,
                kind="refund",
                reference=None,
                provider_object_id=payment.get("order_id"),
                refund_status=REFUND_STATUS.get(str(refund.get("status"))),
                provider_refund_id=refund.get("id"),
                amount=refund.get("amount"),
                currency=refund.get("currency"),
            )
        return None
