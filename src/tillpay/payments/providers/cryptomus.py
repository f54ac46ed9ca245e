"""Adapter for Cryptomus (crypto invoices), spoken to over its REST API with httpx.

There is no official Python SDK, so the few wire rules live here, pinned by known-answer
tests (docs/providers/cryptomus.md, /work/shared/reference/providers.md §5):

- every request is a JSON ``POST`` with the headers ``merchant: <merchant uuid>`` and
  ``sign: md5(base64(body) + PAYMENT_API_KEY)`` over the exact bytes sent;
- webhooks carry ``sign`` inside the JSON body, computed over the rest of the body as PHP's
  ``json_encode($data, JSON_UNESCAPED_UNICODE)`` writes it (:func:`php_json`);
- amounts are decimal strings, converted from and to integer minor units with
  :mod:`tillpay.kit.money` (never ``float``);
- ``order_id`` is our attempt reference; Cryptomus answers a repeated ``order_id`` with the
  existing invoice, which makes creation safe to retry.

A webhook is only a hint: the payment service re-reads ``/v1/payment/info`` before acting.
``paid_over``, ``wrong_amount`` and other outcomes a person must judge come back with
``ProviderState.needs_review`` set, so they are flagged (and audited), never fulfilled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import httpx

from tillpay.kit.money import EXPONENTS, MoneyError, from_minor, to_minor
from tillpay.kit.outbound import ProviderClient, ProviderError, ProviderUnavailable
from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.base import (
    CreateRequest,
    ProviderState,
    RefundState,
    WebhookNotice,
)
from tillpay.settings import ConfigurationError, Settings

__all__ = [
    "PAYMENT_STATUS",
    "REFUND_STATUS",
    "CryptomusAdapter",
    "php_json",
    "request_sign",
    "verify_webhook_body",
    "webhook_sign",
]

# Cryptomus status → (tillpay attempt status, review reason). A review reason flags the
# payment; with it a success is never applied (see ProviderState.needs_review).
PAYMENT_STATUS: Final[Mapping[str, tuple[PaymentStatus, str | None]]] = {
    "check": (PaymentStatus.REQUIRES_ACTION, None),
    "wrong_amount_waiting": (PaymentStatus.REQUIRES_ACTION, None),
    "confirm_check": (PaymentStatus.PROCESSING, None),
    "process": (PaymentStatus.PROCESSING, None),
    "paid": (PaymentStatus.SUCCEEDED, None),  # only with is_final, see _payment_status
    "paid_over": (PaymentStatus.SUCCEEDED, "overpaid"),
    "wrong_amount": (PaymentStatus.PROCESSING, "underpaid"),
    "locked": (PaymentStatus.PROCESSING, "funds_held"),
    "cancel": (PaymentStatus.EXPIRED, None),
    "fail": (PaymentStatus.FAILED, None),
    "system_fail": (PaymentStatus.FAILED, "provider_system_fail"),
    # An invoice being refunded was paid; seen on an open attempt it needs a person.
    "refund_process": (PaymentStatus.SUCCEEDED, "refunded_at_provider"),
    "refund_fail": (PaymentStatus.SUCCEEDED, "refunded_at_provider"),
    "refund_paid": (PaymentStatus.SUCCEEDED, "refunded_at_provider"),
}
REFUND_STATUS: Final[Mapping[str, RefundStatus]] = {
    "refund_process": RefundStatus.PENDING,
    "refund_paid": RefundStatus.SUCCEEDED,
    "refund_fail": RefundStatus.FAILED,
    # The refund request is accepted but not visible on the invoice yet.
    "paid": RefundStatus.PENDING,
    "paid_over": RefundStatus.PENDING,
}
_REFUNDABLE = frozenset({"paid", "paid_over"})
_FAILED_CODES = frozenset({"fail", "system_fail", "cancel"})

_ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Cryptomus `alpha_dash`, 1 to 128
_ADDRESS_RE: Final = re.compile(r"[A-Za-z0-9:_-]{10,128}")
_AMOUNT_RE: Final = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?")


# ----------------------------------------------------------------------------- signatures


def request_sign(body: bytes, api_key: str) -> str:
    """``md5(base64(body) + api_key)`` in hex: the ``sign`` header of an API request."""
    # MD5 is the Cryptomus protocol, not our choice; the long API key is the secret.
    digest = hashlib.md5(base64.b64encode(body) + api_key.encode())  # noqa: S324  # nosec B324
    return digest.hexdigest()


def php_json(data: Any) -> str:
    """Encode like PHP's ``json_encode($data, JSON_UNESCAPED_UNICODE)``: no whitespace,
    non-ASCII raw, ``/`` escaped as ``\\/``, U+2028/U+2029 escaped (PHP escapes them even
    with JSON_UNESCAPED_UNICODE)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("/", "\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def webhook_sign(data: Mapping[str, Any], api_key: str) -> str:
    """The ``sign`` Cryptomus puts into a webhook whose other fields are ``data``."""
    return request_sign(php_json(dict(data)).encode("utf-8"), api_key)


def verify_webhook_body(raw: bytes, api_key: str) -> bool:
    """Check the ``sign`` inside a webhook body: parse, drop ``sign``, re-encode PHP-style,
    compare in constant time. Any malformed input is simply not authentic."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return False
        sign = data.pop("sign", None)
        if not isinstance(sign, str):
            return False
        expected = webhook_sign(data, api_key)
        return hmac.compare_digest(expected.encode(), sign.encode("utf-8"))
    except (ValueError, UnicodeError, RecursionError):
        return False


# ----------------------------------------------------------------------------- helpers


def _minor(text: object, currency: object) -> int | None:
    """Minor units of a Cryptomus decimal string, or None if it is not exact."""
    if not isinstance(text, str) or not isinstance(currency, str) or currency not in EXPONENTS:
        return None
    if not _AMOUNT_RE.fullmatch(text):
        return None
    try:
        return to_minor(Decimal(text), currency)
    except MoneyError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _payment_status(status: str, is_final: object) -> tuple[PaymentStatus, str | None]:
    if status == "paid" and is_final is not True:
        # Paid but not final yet (confirmations pending): keep waiting.
        return PaymentStatus.PROCESSING, None
    return PAYMENT_STATUS.get(status, (PaymentStatus.UNKNOWN, "unrecognised_status"))


class CryptomusAdapter:
    """Cryptomus invoices (hosted payment page), invoice info for sync, full refunds."""

    name = "cryptomus"

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.cryptomus_merchant_id is None or settings.cryptomus_payment_api_key is None:
            raise ConfigurationError("Cryptomus needs a merchant id and a payment API key")
        self._key = settings.cryptomus_payment_api_key.get_secret_value()
        unknown = [c for c in settings.cryptomus_currencies if c not in EXPONENTS]
        if unknown:
            raise ConfigurationError(f"TILLPAY_CRYPTOMUS_CURRENCIES: unsupported {unknown}")
        self._currencies = frozenset(settings.cryptomus_currencies)
        try:
            self._webhook_networks = [
                ipaddress.ip_network(entry, strict=False)
                for entry in settings.cryptomus_webhook_ips
            ]
        except ValueError:
            raise ConfigurationError(
                "TILLPAY_CRYPTOMUS_WEBHOOK_IPS: entries must be IPs or CIDRs"
            ) from None
        self._lifetime = settings.cryptomus_invoice_lifetime_seconds or min(
            43200, max(300, settings.reservation_ttl_seconds)
        )
        self._callback_url = f"{settings.public_base_url}/v1/webhooks/cryptomus"
        self._is_subtract = settings.cryptomus_refund_is_subtract
        self.client = ProviderClient(
            "cryptomus",
            settings.cryptomus_api_base.rstrip("/"),
            timeout=settings.provider_timeout_seconds,
            headers={
                "merchant": settings.cryptomus_merchant_id,
                "content-type": "application/json;charset=UTF-8",
                "accept": "application/json",
            },
            transport=transport,
        )

    def currencies(self) -> list[str]:
        return sorted(self._currencies)

    def supports(self, currency: str, amount: int) -> bool:
        return currency in self._currencies and amount > 0

    def allowed_source(self, ip: str) -> bool:
        """Whether a webhook may come from ``ip`` (defence in depth; the signature is the
        gate). True for every address when no allow-list is configured."""
        if not self._webhook_networks:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._webhook_networks)

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------------- wire

    async def _call(self, path: str, payload: Mapping[str, Any], *, retry_safe: bool) -> Any:
        """POST ``payload`` signed over the exact bytes sent; the ``result`` on success."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        response = await self.client.request(
            "POST",
            path,
            content=body,
            headers={"sign": request_sign(body, self._key)},
            retry_safe=retry_safe,
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if response.status_code < 400:
                # A 2xx we cannot read may still have done something.
                raise ProviderUnavailable("cryptomus: malformed response")
            raise ProviderError(f"cryptomus_http_{response.status_code}")
        if response.status_code < 400 and data.get("state") == 0:
            return data.get("result")
        message = _str(data.get("message")) or ""
        if "not found" in message.lower() and "payment" in message.lower():
            raise ProviderError("not_found", message)
        if response.status_code in (401, 403):
            raise ProviderError("cryptomus_unauthorized", message)
        if isinstance(data.get("errors"), dict):
            fields = ",".join(sorted(str(k) for k in data["errors"]))
            raise ProviderError("cryptomus_validation", f"invalid fields: {fields}")
        raise ProviderError(f"cryptomus_http_{response.status_code}", message)

    async def _info(self, query: Mapping[str, str]) -> Mapping[str, Any]:
        result = await self._call("/v1/payment/info", query, retry_safe=True)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise ProviderUnavailable("cryptomus: malformed invoice")
        return result

    @staticmethod
    def _summary(invoice: Mapping[str, Any]) -> dict[str, Any]:
        # The provider's own strings, unconverted, for support; no wallet addresses.
        keys = (
            "uuid",
            "status",
            "payment_status",
            "is_final",
            "amount",
            "currency",
            "payment_amount",
            "payer_amount",
            "payer_currency",
            "merchant_amount",
            "network",
            "txid",
        )
        return {k: invoice.get(k) for k in keys if k in invoice}

    def _state(self, invoice: Mapping[str, Any]) -> ProviderState:
        provider_status = str(invoice["status"])
        status, review = _payment_status(provider_status, invoice.get("is_final"))
        currency = _str(invoice.get("currency"))
        return ProviderState(
            status=status,
            provider_status=provider_status,
            provider_object_id=_str(invoice.get("uuid")),
            amount=_minor(invoice.get("amount"), currency),
            currency=currency,
            reference=_str(invoice.get("order_id")),
            redirect_url=(
                _str(invoice.get("url")) if status is PaymentStatus.REQUIRES_ACTION else None
            ),
            decline_code=provider_status if provider_status in _FAILED_CODES else None,
            summary=self._summary(invoice),
            needs_review=review,
        )

    # ------------------------------------------------------------------------- payments

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        if not _ORDER_ID_RE.fullmatch(request.reference):
            raise ProviderError("invalid_reference")
        payload = {
            "amount": format(from_minor(request.amount, request.currency), "f"),
            "currency": request.currency,
            "order_id": request.reference,
            "url_return": request.return_url,
            "url_success": request.return_url,
            "url_callback": self._callback_url,
            "lifetime": self._lifetime,
        }
        # A repeated order_id returns the existing invoice: retrying cannot double-charge.
        result = await self._call("/v1/payment", payload, retry_safe=True)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise ProviderUnavailable("cryptomus: malformed invoice")
        return self._state(result)

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        return self._state(await self._info({"order_id": reference}))

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
        address: str | None = None,
    ) -> RefundState:
        """Refund the whole invoice to the payer's wallet ``address``.

        Cryptomus refunds are crypto payouts of the full invoice: the API has no amount
        and needs a wallet address only the payer can give (refunding to the sending
        address may hit an exchange's shared wallet). Without one this raises
        ``ProviderError("refund_needs_address")`` before any call. The API has no
        idempotency key, so the invoice is read first: a refund already under way is
        reported instead of being requested twice.
        """
        if address is None:
            raise ProviderError(
                "refund_needs_address",
                "Cryptomus refunds need the payer's wallet address; refund in the dashboard.",
            )
        if not _ADDRESS_RE.fullmatch(address):
            raise ProviderError("invalid_refund_address")
        query = {"uuid": provider_object_id} if provider_object_id else {"order_id": reference}
        invoice = await self._info(query)
        status = str(invoice["status"])
        if status.startswith("refund_"):
            return self._refund_state(invoice)
        if status not in _REFUNDABLE:
            raise ProviderError("not_refundable")
        if amount != _minor(invoice.get("amount"), currency):
            raise ProviderError("partial_refund_unsupported")
        uuid = _str(invoice.get("uuid"))
        if uuid is None:
            raise ProviderUnavailable("cryptomus: malformed invoice")
        await self._call(
            "/v1/payment/refund",
            {"uuid": uuid, "address": address, "is_subtract": self._is_subtract},
            retry_safe=False,  # no idempotency key at Cryptomus: never resend blindly
        )
        return RefundState(RefundStatus.PENDING, uuid, amount, "requested")

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        return None  # refund events carry the invoice's order id

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        raise ProviderError("refund_id_unknown")  # its refund events name the refund

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState:
        # A refund is a state of its invoice: the refund id is the invoice uuid.
        uuid = provider_refund_id or provider_object_id
        if not uuid:
            raise ProviderError("refund_id_unknown")
        return self._refund_state(await self._info({"uuid": uuid}))

    @staticmethod
    def _refund_state(invoice: Mapping[str, Any]) -> RefundState:
        status = str(invoice["status"])
        return RefundState(
            status=REFUND_STATUS.get(status, RefundStatus.UNKNOWN),
            provider_refund_id=_str(invoice.get("uuid")),
            amount=_minor(invoice.get("amount"), invoice.get("currency")),
            provider_status=status,
            failure_code=status if status == "refund_fail" else None,
        )

    # ------------------------------------------------------------------------- webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return verify_webhook_body(body, self._key)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        """Everything comes from the body, so the worker's re-parse with ``{}`` headers
        gives the same notice. Dedupe on (``uuid``, ``status``)."""
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("webhook body is not an object")
        if event.get("type") != "payment":
            return None  # static-wallet and payout events: tillpay creates neither
        uuid, status = event["uuid"], event["status"]
        if not isinstance(uuid, str) or not isinstance(status, str):
            raise TypeError("uuid and status must be strings")
        currency = _str(event.get("currency"))
        common: dict[str, Any] = {
            "dedupe_key": f"{uuid}:{status}",
            "event_type": f"payment.{status}"[:64],
            "reference": _str(event.get("order_id")),
            "provider_object_id": uuid,
            "amount": _minor(event.get("amount"), currency),
            "currency": currency,
        }
        if status.startswith("refund_"):
            return WebhookNotice(
                kind="refund",
                refund_status=REFUND_STATUS.get(status, RefundStatus.UNKNOWN),
                provider_refund_id=uuid,
                **common,
            )
        payment_status, _ = _payment_status(status, event.get("is_final"))
        return WebhookNotice(kind="payment", status=payment_status, **common)
