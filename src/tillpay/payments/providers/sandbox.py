"""Adapter for the built-in sandbox PSP (``tillpay.sandbox.psp``), spoken to over HTTP."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from tillpay.kit import signing
from tillpay.kit.money import FIAT_EXPONENTS, is_fiat_currency
from tillpay.kit.outbound import ProviderClient, ProviderError, ProviderUnavailable
from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.base import (
    CreateRequest,
    ProviderState,
    RefundState,
    WebhookNotice,
    tillpay_refund_id,
)
from tillpay.sandbox import psp
from tillpay.settings import Settings

STATUS = {
    "open": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PROCESSING,
    "succeeded": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
}
REFUND_STATUS = {
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "pending": RefundStatus.PENDING,
}


class SandboxAdapter:
    name = "sandbox"

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        base = (settings.sandbox_api_base or settings.public_base_url).rstrip("/")
        self.client = ProviderClient(
            "sandbox",
            base + "/sandbox/api",
            timeout=settings.provider_timeout_seconds,
            headers={"Authorization": f"Bearer {psp.api_key(settings)}"},
            transport=transport,
        )
        self.webhook_secret = psp.webhook_secret(settings)

    def currencies(self) -> list[str]:
        return sorted(FIAT_EXPONENTS)

    def supports(self, currency: str, amount: int) -> bool:
        return is_fiat_currency(currency) and amount > 0

    async def aclose(self) -> None:
        await self.client.aclose()

    @staticmethod
    def _state(data: Mapping[str, Any]) -> ProviderState:
        status = STATUS.get(str(data.get("status")), PaymentStatus.UNKNOWN)
        return ProviderState(
            status=status,
            provider_status=str(data.get("status")),
            provider_object_id=str(data["id"]),
            amount=int(data["amount"]),
            currency=str(data["currency"]),
            reference=str(data["reference"]),
            redirect_url=str(data["url"]) if status is PaymentStatus.REQUIRES_ACTION else None,
            decline_code=data.get("decline_code"),
            summary={
                "status": data.get("status"),
                "decline_code": data.get("decline_code"),
                "card_last4": data.get("card_last4"),
            },
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ProviderUnavailable("sandbox: malformed response") from None
        if not isinstance(data, dict):
            raise ProviderUnavailable("sandbox: malformed response")
        return data

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        response = await self.client.request(
            "POST",
            "/sessions",
            json={
                "reference": request.reference,
                "amount": request.amount,
                "currency": request.currency,
                "return_url": request.return_url,
            },
            retry_safe=True,  # the reference makes creation idempotent at the sandbox
        )
        if response.status_code >= 400:
            raise ProviderError(f"sandbox_http_{response.status_code}")
        return self._state(self._json(response))

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        response = await self.client.request(
            "GET", f"/sessions/by-reference/{reference}", retry_safe=True
        )
        if response.status_code == 404:
            raise ProviderError("not_found")
        if response.status_code >= 400:
            raise ProviderError(f"sandbox_http_{response.status_code}")
        return self._state(self._json(response))

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
        response = await self.client.request(
            "POST",
            f"/sessions/{provider_object_id}/refunds",
            json={"amount": amount},
            headers={"Idempotency-Key": f"tillpay:{refund_id}:refund"},
            retry_safe=True,
        )
        if response.status_code >= 400:
            raise ProviderError(f"sandbox_http_{response.status_code}")
        return self._refund_state(self._json(response))

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        return None  # refund events carry the reference

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        raise ProviderError("refund_id_unknown")  # its refund events name the refund

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState:
        if provider_refund_id is None:
            # Replaying the create with the same key returns the original refund.
            raise ProviderError("refund_id_unknown")
        response = await self.client.request(
            "GET", f"/refunds/{provider_refund_id}", retry_safe=True
        )
        if response.status_code >= 400:
            raise ProviderError(f"sandbox_http_{response.status_code}")
        return self._refund_state(self._json(response))

    @staticmethod
    def _refund_state(data: Mapping[str, Any]) -> RefundState:
        return RefundState(
            status=REFUND_STATUS.get(str(data.get("status")), RefundStatus.UNKNOWN),
            provider_refund_id=str(data["id"]),
            amount=int(data["amount"]),
            provider_status=str(data.get("status")),
            # tillpay's own refunds are keyed "tillpay:{refund_id}:refund".
            tillpay_refund_id=tillpay_refund_id(
                str(data.get("idempotency_key") or "")
                .removeprefix("tillpay:")
                .removesuffix(":refund")
            ),
        )

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return signing.verify(
            body, headers.get(psp.SIGNATURE_HEADER.lower()), [self.webhook_secret]
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        event = json.loads(body)
        event_type = str(event.get("type", ""))
        data = event.get("data") or {}
        session = data.get("session") or {}
        if event_type.startswith("session."):
            return WebhookNotice(
                dedupe_key=str(event["id"]),
                event_type=event_type,
                kind="payment",
                reference=session.get("reference"),
                provider_object_id=session.get("id"),
                status=STATUS.get(str(session.get("status"))),
                amount=session.get("amount"),
                currency=session.get("currency"),
            )
        if event_type.startswith("refund."):
            refund = data.get("refund") or {}
            return WebhookNotice(
                dedupe_key=str(event["id"]),
                event_type=event_type,
                kind="refund",
                reference=session.get("reference"),
                provider_object_id=refund.get("session_id"),
                refund_status=REFUND_STATUS.get(str(refund.get("status"))),
                provider_refund_id=refund.get("id"),
                amount=refund.get("amount"),
            )
        return None
