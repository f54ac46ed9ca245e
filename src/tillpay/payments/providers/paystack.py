"""Adapter for Paystack, spoken to over its REST API with httpx.

pypaystack2 (the maintained async SDK) compares webhook signatures with ``==``, so the few
wire rules are tillpay's own: the pure ones (references, amounts, statuses, signatures) live
in :mod:`tillpay.payments.providers.paystack_wire`; the calls live here:

- every call carries ``Authorization: Bearer <secret key>``; answers are envelopes
  ``{"status": bool, "message": str, "data": …}``;
- Paystack rejects a reused reference ("Duplicate Transaction Reference"), which makes
  retrying ``transaction/initialize`` safe: a retry can never open a second transaction;
- refunds have no idempotency key: each carries ``merchant_note = "tillpay refund <id>"``
  and is looked up by that note before any (re-)creation. The published refund list
  (PaystackOSS/openapi ``dist/paystack.yaml``, ``refund_list``) filters only by ``from``/
  ``to`` and pages with ``perPage``/``page`` (``meta.pageCount``); it has no transaction
  filter. The look-up therefore pages through every refund created since the tillpay
  refund (its id carries its creation time), bounded by :data:`REFUND_LOOKUP_PAGES`;
  past the bound an earlier refund cannot be ruled out and nothing is created.

A webhook is only a hint: the payment service re-reads ``transaction/verify`` and checks
amount, currency and reference before anything is marked paid.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx

from tillpay.kit.ids import id_created_at
from tillpay.kit.money import FIAT_EXPONENTS
from tillpay.kit.outbound import ProviderClient, ProviderError, ProviderUnavailable
from tillpay.payments.models import PaymentStatus
from tillpay.payments.providers.base import CreateRequest, ProviderState, RefundState, WebhookNotice
from tillpay.payments.providers.paystack_wire import (
    PAYMENT_STATUS,
    REFUND_EVENTS,
    REFUND_STATUS,
    SIGNATURE_HEADER,
    paystack_reference,
    refund_marker,
    refund_state,
    subunit_amount,
    tillpay_reference,
    transaction_state,
    verify_signature,
)
from tillpay.settings import ConfigurationError, Settings

__all__ = ["REFUND_LOOKUP_PAGES", "PaystackAdapter"]

# The refund look-up reads at most this many pages of 100 refunds created since the
# refund (1,000 refunds); past it the refund stays unknown rather than risk a second one.
REFUND_LOOKUP_PAGES: Final = 10
_REFUND_PAGE_SIZE: Final = 100
# Listed from this long before the refund's id time: covers clock skew between tillpay and
# Paystack (the refund row is written before the first create is sent).
_REFUND_LOOKUP_SLACK: Final = timedelta(hours=1)
_DUPLICATE_REFERENCE: Final = "duplicate transaction reference"
_REFERENCE_NOT_FOUND: Final = "transaction reference not found"


class PaystackAdapter:
    """Hosted checkout (``authorization_url``) with verify-by-reference as the truth."""

    name = "paystack"

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.paystack_secret_key is None:
            raise ConfigurationError("TILLPAY_PAYSTACK_SECRET_KEY is required for Paystack")
        self._secret = settings.paystack_secret_key.get_secret_value()
        if not self._secret.startswith(("sk_test_", "sk_live_")):
            # The public key (pk_…) can neither call the API nor verify webhooks.
            raise ConfigurationError(
                "TILLPAY_PAYSTACK_SECRET_KEY: expected a secret key (sk_test_… or sk_live_…)"
            )
        self._currencies = sorted({c.upper() for c in settings.paystack_currencies})
        for code in self._currencies:
            # Paystack counts every currency in hundredths; a currency whose minor unit is
            # not 1/100 would be charged at the wrong scale.
            if FIAT_EXPONENTS.get(code) != 2:
                raise ConfigurationError(
                    f"TILLPAY_PAYSTACK_CURRENCIES: {code} is not a currency Paystack can charge"
                )
        try:
            self._sources = [
                ipaddress.ip_network(entry, strict=False) for entry in settings.paystack_webhook_ips
            ]
        except ValueError:
            raise ConfigurationError(
                "TILLPAY_PAYSTACK_WEBHOOK_IPS: entries must be IP addresses or CIDRs"
            ) from None
        self.client = ProviderClient(
            "paystack",
            settings.paystack_api_base.rstrip("/"),
            timeout=settings.paystack_timeout_seconds or settings.provider_timeout_seconds,
            headers={"Authorization": f"Bearer {self._secret}", "Accept": "application/json"},
            transport=transport,
        )

    def currencies(self) -> list[str]:
        return list(self._currencies)

    def supports(self, currency: str, amount: int) -> bool:
        return currency in self._currencies and amount > 0

    async def aclose(self) -> None:
        await self.client.aclose()

    def allowed_source(self, ip: str) -> bool:
        """Whether a webhook may come from ``ip`` (the trusted-proxy-resolved client
        address). Defence in depth only: the signature is always checked too."""
        if not self._sources:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._sources)

    # ------------------------------------------------------------------------- wire

    @staticmethod
    def _envelope(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ProviderUnavailable("paystack: malformed response") from None
        if not isinstance(body, dict):
            raise ProviderUnavailable("paystack: malformed response")
        return body

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        """The ``data`` object of a successful answer."""
        body = self._envelope(response)
        data = body.get("data")
        if body.get("status") is not True or not isinstance(data, dict):
            raise ProviderError(f"paystack_http_{response.status_code}")
        return data

    @staticmethod
    def _message(body: Mapping[str, Any]) -> str:
        return str(body.get("message") or "").strip().lower()

    @staticmethod
    def _refused(response: httpx.Response) -> ProviderError:
        if response.status_code == 401:
            return ProviderError("paystack_auth_failed")
        return ProviderError(f"paystack_http_{response.status_code}")

    # ------------------------------------------------------------------------- payments

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        if not request.customer_email:
            raise ProviderError("email_required")
        metadata = {
            "tillpay_payment_id": request.payment_id,
            "tillpay_order_id": request.order_id,
            "tillpay_reference": request.reference,
        }
        response = await self.client.request(
            "POST",
            "/transaction/initialize",
            json={
                "email": request.customer_email,
                "amount": request.amount,
                "currency": request.currency,
                "reference": paystack_reference(request.reference),
                "callback_url": request.return_url,
                # The API documents metadata as a stringified JSON object.
                "metadata": json.dumps(metadata, separators=(",", ":")),
            },
            # Paystack refuses a reference it has seen, so a retry cannot open a second
            # transaction; a lost first answer surfaces as a duplicate, handled below.
            retry_safe=True,
        )
        if response.status_code >= 400:
            body = self._envelope(response)
            if self._message(body) == _DUPLICATE_REFERENCE:
                # The transaction exists (an earlier try reached Paystack): its verify
                # answer is the truth, though its checkout URL cannot be recovered.
                return await self.retrieve(reference=request.reference, provider_object_id=None)
            raise self._refused(response)
        data = self._data(response)
        url = str(data.get("authorization_url") or "")
        if not url.startswith("https://"):
            raise ProviderUnavailable("paystack: no usable authorization_url")
        return ProviderState(
            status=PaymentStatus.REQUIRES_ACTION,
            provider_status="initialized",
            provider_object_id=None,  # Paystack's numeric id is first seen on verify
            amount=request.amount,
            currency=request.currency,
            reference=request.reference,
            redirect_url=url,
            # Lets a shop resume the same transaction with Paystack's inline popup.
            client_data={"access_code": str(data.get("access_code") or "")},
            summary={"status": "initialized"},
        )

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        response = await self.client.request(
            "GET",
            f"/transaction/verify/{quote(paystack_reference(reference), safe='')}",
            retry_safe=True,
        )
        if response.status_code == 404 or (
            response.status_code == 400
            and self._message(self._envelope(response)) == _REFERENCE_NOT_FOUND
        ):
            raise ProviderError("not_found")
        if response.status_code >= 400:
            raise self._refused(response)
        return transaction_state(self._data(response))

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
        marker = refund_marker(refund_id)
        # No idempotency key at Paystack: an earlier try whose answer was lost must be
        # found before a second refund can be created.
        existing = await self._find_refund(marker, refund_id)
        if existing is not None:
            return refund_state(existing)
        response = await self.client.request(
            "POST",
            "/refund",
            json={
                "transaction": paystack_reference(reference),
                "amount": amount,
                "currency": currency,
                "merchant_note": marker,
            },
        )
        if response.status_code >= 400:
            raise self._refused(response)
        return refund_state(self._data(response))

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        return None  # refund events carry the transaction reference

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState:
        if provider_refund_id is None:
            found = await self._find_refund(refund_marker(refund_id), refund_id)
            if found is None:
                raise ProviderError("refund_id_unknown")
            return refund_state(found)
        response = await self.client.request(
            "GET", f"/refund/{quote(provider_refund_id, safe='')}", retry_safe=True
        )
        if response.status_code == 404:
            raise ProviderError("not_found")
        if response.status_code >= 400:
            raise self._refused(response)
        return refund_state(self._data(response))

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        """The transaction's refunds, for a refund event without an id (most of Paystack's
        samples carry none). The list has no transaction filter: refunds created since
        shortly before the payment are paged through (same bound as the look-up) and
        matched on their ``transaction`` id."""
        query = {"perPage": str(_REFUND_PAGE_SIZE)}
        created = id_created_at(reference.rpartition("_")[0])
        if created is not None:
            since = created - _REFUND_LOOKUP_SLACK
            query["from"] = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        found: list[RefundState] = []
        page = 1
        while True:
            items, page_count = await self._refund_page({**query, "page": str(page)})
            for item in items:
                if not isinstance(item, dict) or item.get("id") is None:
                    continue
                txn = item.get("transaction")
                txn_id = txn.get("id") if isinstance(txn, dict) else txn
                if str(txn_id) == provider_object_id:
                    found.append(refund_state(item))
            if page >= page_count:
                return found
            if page >= REFUND_LOOKUP_PAGES:
                raise ProviderUnavailable("paystack: too many refunds to list the transaction's")
            page += 1

    async def _find_refund(self, marker: str, refund_id: str) -> dict[str, Any] | None:
        """The refund carrying ``marker``, if Paystack has one (reads: safe to retry).

        Only what the published list supports: ``from`` (refunds created since shortly
        before the tillpay refund), ``perPage`` and ``page``, followed to
        ``meta.pageCount``. A refund created while paging only pushes older ones down a
        page (newest first), so none is skipped. ``None`` is returned only after every
        page was read; otherwise the outcome stays unknown (ProviderUnavailable)."""
        query = {"perPage": str(_REFUND_PAGE_SIZE)}
        created = id_created_at(refund_id)
        if created is not None:
            since = created - _REFUND_LOOKUP_SLACK
            query["from"] = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        page = 1
        while True:
            items, page_count = await self._refund_page({**query, "page": str(page)})
            for item in items:
                if isinstance(item, dict) and item.get("merchant_note") == marker:
                    return item
            if page >= page_count:
                return None
            if page >= REFUND_LOOKUP_PAGES:
                # Unable to rule out an earlier refund: never risk a second one.
                raise ProviderUnavailable("paystack: too many refunds to rule out an earlier one")
            page += 1

    async def _refund_page(self, query: Mapping[str, str]) -> tuple[list[Any], int]:
        """One page of ``GET /refund``: its items and ``meta.pageCount``."""
        path = "/refund?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        response = await self.client.request("GET", path, retry_safe=True)
        if response.status_code >= 400:
            # Unable to rule out an earlier refund: the outcome stays unknown.
            raise ProviderUnavailable(f"paystack: refund lookup answered {response.status_code}")
        body = self._envelope(response)
        items, meta = body.get("data"), body.get("meta")
        page_count = meta.get("pageCount") if isinstance(meta, dict) else None
        if (
            body.get("status") is not True
            or not isinstance(items, list)
            or isinstance(page_count, bool)
            or not isinstance(page_count, int)
        ):
            # Without the page count the list cannot be known complete.
            raise ProviderUnavailable("paystack: malformed refund list")
        return items, page_count

    # ------------------------------------------------------------------------- webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return verify_signature(body, headers.get(SIGNATURE_HEADER), self._secret)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        """Only the body is used (the worker re-parses stored bodies without headers).
        Events for references tillpay did not make are acknowledged and ignored."""
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("not a Paystack event")
        name = str(event.get("event") or "")
        if name != "charge.success" and name not in REFUND_EVENTS:
            # Not read at all: some events tillpay does not use carry a list as their
            # data (subscription.expiring_cards).
            return None
        data = event.get("data")
        if not isinstance(data, dict):
            raise ValueError(f"{name} must carry an object")
        if name == "charge.success":
            raw = str(data["reference"])
            reference = tillpay_reference(raw)
            if reference is None:
                return None
            provider_status = str(data.get("status"))
            status = PAYMENT_STATUS.get(provider_status)
            currency = data.get("currency")
            return WebhookNotice(
                dedupe_key=f"{name}:{raw}:{provider_status}",
                event_type=name,
                kind="payment",
                reference=reference,
                provider_object_id=str(data["id"]) if data.get("id") is not None else None,
                status=status[0] if status else None,
                amount=subunit_amount(data.get("amount")),
                currency=str(currency).upper() if currency else None,
            )
        if name in REFUND_EVENTS:
            raw = str(data["transaction_reference"])
            reference = tillpay_reference(raw)
            if reference is None:
                return None  # a transaction tillpay did not make
            refund_id = data.get("id")
            # The refund id tells apart two refunds of the same transaction even when their
            # amounts match and refund_reference is still null. Without it (most samples)
            # the event is keyed on the refund reference or amount, and the payment
            # service reconciles every refund of the transaction.
            distinct = (
                refund_id
                if refund_id is not None
                else (data.get("refund_reference") or data.get("amount"))
            )
            return WebhookNotice(
                dedupe_key=f"{name}:{raw}:{distinct}",
                event_type=name,
                kind="refund",
                reference=reference,
                provider_object_id=None,
                refund_status=REFUND_STATUS.get(str(data.get("status"))),
                provider_refund_id=str(refund_id) if refund_id is not None else None,
                amount=subunit_amount(data.get("amount")),
            )
        return None
