"""Stripe adapter: the official ``stripe`` SDK, async over httpx.

Two flows, chosen by ``stripe_flow``: a Checkout Session (the payer is redirected to
Stripe's hosted page; the default) or a bare PaymentIntent whose client secret the shop's
front end hands to Stripe Elements. Either way every object carries our attempt reference
(``{payment_id}_{attempt_no}``) in its metadata, so any PaymentIntent maps back to exactly
one attempt, and every POST carries an idempotency key derived from our ids, so the SDK's
retries (and any replay) can never create a second object.

Amounts, object states and webhook signatures (the pure wire mapping) live in
:mod:`tillpay.payments.providers.stripe_wire`; this module holds the SDK's HTTP client and
the adapter that makes the calls.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Final, TypeVar

import httpx
import stripe

from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import (
    CircuitBreaker,
    ProviderDeclined,
    ProviderError,
    ProviderUnavailable,
)
from tillpay.payments.providers.base import CreateRequest, ProviderState, RefundState, WebhookNotice
from tillpay.payments.providers.stripe_wire import (
    MAX_AMOUNT,
    MIN_AMOUNT,
    PAYMENT_INTENT_EVENTS,
    REFERENCE_KEY,
    REFUND_EVENTS,
    SESSION_EVENTS,
    SIGNATURE_HEADER,
    STRIPE_REFUND_REASONS,
    intent_state,
    metadata_reference,
    object_currency,
    refund_state,
    session_state,
    stripe_exponent,
    to_stripe_amount,
    verify_signature,
)
from tillpay.settings import Settings

log = get_logger(__name__)

T = TypeVar("T")

# Checkout Session ``expires_at`` must lie "between 30 minutes and 24 hours after the current
# time" (docs.stripe.com/payments/checkout/managing-limited-inventory; API reference
# ``expires_at``: "anywhere from 30 minutes to 24 hours after Checkout Session creation"),
# judged by Stripe's clock when the request arrives.
CHECKOUT_MIN_LIFETIME: Final = 1800
CHECKOUT_MAX_LIFETIME: Final = 86400
CLOCK_ALLOWANCE: Final = 60  # skew between tillpay's and Stripe's clocks, plus latency
SDK_MAX_BACKOFF: Final = 5.0  # stripe-python's longest sleep between retries (MAX_DELAY)


# ----------------------------------------------------------------------------- HTTP


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client on an ``AsyncClient`` we build: the SDK offers no transport
    parameter, and tests route provider traffic to an in-process emulator through one."""

    def __init__(self, *, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
        limits = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        super().__init__(timeout=limits)
        self._client_async = self.async_client = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=stripe.ca_bundle_path),
            transport=transport,
            timeout=limits,
            follow_redirects=False,  # never re-send a payment body elsewhere
        )

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        # The SDK passes the encoded form as ``data=``, which httpx deprecates for text.
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data.encode() if isinstance(data, str) else data
        return args, kwargs


# ----------------------------------------------------------------------------- adapter


def checkout_lifetime(requested: int, *, timeout: float, retries: int) -> int:
    """The Checkout Session lifetime tillpay sends: ``requested``, kept inside Stripe's
    window with a margin. ``expires_at`` is computed once and every SDK retry resends it
    unchanged (the idempotency key demands the same parameters), so the minimum must still
    hold when the last retry arrives, after each try's time-out and back-off, on a clock
    that may run ahead of ours; the maximum must hold on a clock that runs behind."""
    margin = CLOCK_ALLOWANCE + math.ceil(retries * (timeout + SDK_MAX_BACKOFF))
    longest = CHECKOUT_MAX_LIFETIME - CLOCK_ALLOWANCE
    return min(max(requested, CHECKOUT_MIN_LIFETIME + margin), longest)


class StripeAdapter:
    """Stripe through ``StripeClient`` (see the module docstring)."""

    name = "stripe"

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.stripe_secret_key is None:
            raise ValueError("stripe_secret_key is required")
        api_key = settings.stripe_secret_key.get_secret_value()
        timeout = settings.stripe_timeout_seconds or settings.provider_timeout_seconds
        self._http = _HTTPXClient(timeout=timeout, transport=transport)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            # Explicit: a StripeClient without it does not retry at all.
            max_network_retries=settings.stripe_max_network_retries,
            http_client=self._http,
        )
        self.flow = settings.stripe_flow
        self.publishable_key = settings.stripe_publishable_key
        self.session_lifetime = checkout_lifetime(
            settings.stripe_checkout_expires_seconds,
            timeout=timeout,
            retries=settings.stripe_max_network_retries,
        )
        self.webhook_secrets = [s.get_secret_value() for s in settings.stripe_webhook_secrets]
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self._currencies = sorted(
            {
                c.upper()
                for c in settings.stripe_currencies
                if stripe_exponent(c.upper()) is not None
            }
        )
        self.breaker = CircuitBreaker()

    def currencies(self) -> list[str]:
        return list(self._currencies)

    def supports(self, currency: str, amount: int) -> bool:
        if currency not in self._currencies or amount <= 0:
            return False
        try:
            value = to_stripe_amount(amount, currency)
        except ValueError:
            return False
        return MIN_AMOUNT.get(currency, 1) <= value <= MAX_AMOUNT

    async def aclose(self) -> None:
        await self._http.async_client.aclose()

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one SDK call (with the SDK's own retries) and translate its errors."""
        if not self.breaker.allow():
            raise ProviderUnavailable("stripe: circuit open")
        try:
            result = await call()
        except stripe.CardError as exc:
            self.breaker.success()
            raise ProviderDeclined(str(exc.code or "card_declined")) from None
        except stripe.StripeError as exc:
            status = exc.http_status
            code = exc.code or (exc.error.type if exc.error else None) or type(exc).__name__
            log.warning(
                "provider.call_failed",
                provider=self.name,
                operation=operation,
                http_status=status,
                code=code,
                request_id=exc.request_id,
            )
            # No answer, a 5xx, a lock conflict or a rate limit: Stripe may or may not
            # have acted, so the outcome is unknown (the idempotency key makes a replay safe).
            if status is None or status >= 500 or status in (409, 429):
                self.breaker.failure()
                raise ProviderUnavailable(f"stripe: {code}") from None
            self.breaker.success()
            raise ProviderError("not_found" if status == 404 else str(code)) from None
        self.breaker.success()
        return result

    # -------------------------------------------------------------------- payments

    def _metadata(self, request: CreateRequest) -> dict[str, str]:
        return {
            REFERENCE_KEY: request.reference,
            "tillpay_payment_id": request.payment_id,
            "tillpay_order_id": request.order_id,
        }

    async def create_attempt(self, request: CreateRequest) -> ProviderState:
        amount = to_stripe_amount(request.amount, request.currency)
        currency = request.currency.lower()
        metadata = self._metadata(request)
        if self.flow == "payment_intent":
            intent = await self._call(
                "payment_intent.create",
                lambda: self.client.v1.payment_intents.create_async(
                    {
                        "amount": amount,
                        "currency": currency,
                        "automatic_payment_methods": {"enabled": True},
                        "capture_method": "automatic",
                        "description": request.description,
                        "metadata": metadata,
                    },
                    {"idempotency_key": f"tillpay:{request.reference}:payment_intent:create"},
                ),
            )
            data = intent.to_dict()
            client_data: dict[str, Any] = {
                "flow": "payment_intent",
                "payment_intent": data["id"],
                "client_secret": data.get("client_secret"),
            }
            if self.publishable_key:
                client_data["publishable_key"] = self.publishable_key
            return replace(intent_state(data), client_data=client_data)
        session: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": request.reference,
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata, "description": request.description},
            # Computed once per attempt; the same key is never re-sent with another value.
            # The lifetime carries a margin over Stripe's limits (checkout_lifetime).
            "expires_at": int(time.time()) + self.session_lifetime,
        }
        if request.customer_email:
            session["customer_email"] = request.customer_email
        created = await self._call(
            "checkout.session.create",
            lambda: self.client.v1.checkout.sessions.create_async(
                session,  # type: ignore[arg-type]
                {"idempotency_key": f"tillpay:{request.reference}:checkout_session:create"},
            ),
        )
        return session_state(created.to_dict())

    async def retrieve(self, *, reference: str, provider_object_id: str | None) -> ProviderState:
        if provider_object_id and provider_object_id.startswith("cs_"):
            found = await self._call(
                "checkout.session.retrieve",
                lambda: self.client.v1.checkout.sessions.retrieve_async(
                    provider_object_id, {"expand": ["payment_intent"]}
                ),
            )
            return session_state(found.to_dict())
        if provider_object_id and provider_object_id.startswith("pi_"):
            intent = await self._call(
                "payment_intent.retrieve",
                lambda: self.client.v1.payment_intents.retrieve_async(provider_object_id),
            )
            return intent_state(intent.to_dict())
        return await self._find_by_reference(reference)

    async def _find_by_reference(self, reference: str) -> ProviderState:
        """The attempt's PaymentIntent when the create response was lost. Every intent we
        cause (directly or through Checkout) carries the reference in its metadata; no
        intent means no money moved. Search lags writes by up to a minute, which is why
        the payment service waits an hour before calling an attempt never created."""
        quoted = reference.replace("\\", "\\\\").replace("'", "\\'")
        result = await self._call(
            "payment_intent.search",
            lambda: self.client.v1.payment_intents.search_async(
                {"query": f"metadata['{REFERENCE_KEY}']:'{quoted}'", "limit": 10}
            ),
        )
        intents = [i.to_dict() for i in result.data]
        intents = [i for i in intents if metadata_reference(i) == reference]
        if not intents:
            raise ProviderError("not_found")
        # Prefer the one where money moved; otherwise the newest.
        intents.sort(key=lambda i: (i.get("status") == "succeeded", i.get("created") or 0))
        return intent_state(intents[-1])

    # -------------------------------------------------------------------- refunds

    async def _intent_id(self, provider_object_id: str) -> str:
        if provider_object_id.startswith("pi_"):
            return provider_object_id
        if not provider_object_id.startswith("cs_"):
            raise ProviderError("no_payment_intent")
        found = await self._call(
            "checkout.session.retrieve",
            lambda: self.client.v1.checkout.sessions.retrieve_async(provider_object_id),
        )
        intent = found.to_dict().get("payment_intent")
        if isinstance(intent, Mapping):
            intent = intent.get("id")
        if not isinstance(intent, str):
            raise ProviderError("no_payment_intent")
        return intent

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
        intent_id = await self._intent_id(provider_object_id)
        params: dict[str, Any] = {
            "payment_intent": intent_id,
            "amount": to_stripe_amount(amount, currency),
            "metadata": {"tillpay_refund_id": refund_id, REFERENCE_KEY: reference},
        }
        if reason in STRIPE_REFUND_REASONS:
            params["reason"] = reason
        created = await self._call(
            "refund.create",
            lambda: self.client.v1.refunds.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"tillpay:{refund_id}:refund"},
            ),
        )
        return refund_state(created.to_dict())

    async def transaction_refunds(
        self, *, provider_object_id: str, reference: str
    ) -> list[RefundState]:
        raise ProviderError("refund_id_unknown")  # its refund events name the refund

    async def retrieve_refund(
        self, *, refund_id: str, provider_refund_id: str | None, provider_object_id: str
    ) -> RefundState:
        if provider_refund_id is None:
            # The payment service replays the create (same idempotency key) instead.
            raise ProviderError("refund_id_unknown")
        found = await self._call(
            "refund.retrieve",
            lambda: self.client.v1.refunds.retrieve_async(provider_refund_id),
        )
        return refund_state(found.to_dict())

    async def refund_payment_reference(self, notice: WebhookNotice) -> str | None:
        """A refund names its PaymentIntent (``payment_intent``), but a Checkout attempt is
        stored under its session id. The PaymentIntent Checkout created carries tillpay's
        reference: the session was created with ``payment_intent_data.metadata``, "a
        subset of parameters to be passed to PaymentIntent creation"
        (docs.stripe.com/api/checkout/sessions/create#create_checkout_session-payment_intent_data)."""
        intent_id = notice.provider_object_id
        if not intent_id or not intent_id.startswith("pi_"):
            return None
        intent = await self._call(
            "payment_intent.retrieve",
            lambda: self.client.v1.payment_intents.retrieve_async(intent_id),
        )
        return metadata_reference(intent.to_dict())

    # -------------------------------------------------------------------- webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return verify_signature(body, headers.get(SIGNATURE_HEADER), self.webhook_secrets)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice | None:
        """Everything comes from the body (the worker re-parses stored bodies without
        headers). Events for objects tillpay did not create, and events from the other
        mode (test vs live), are ignored."""
        event = json.loads(body)
        if not isinstance(event, dict) or event.get("object") != "event":
            raise ValueError("not a Stripe snapshot event")
        event_type = str(event["type"])
        obj = event["data"]["object"]
        if not isinstance(obj, dict):
            raise TypeError("event data.object must be an object")
        if bool(event.get("livemode")) != self.livemode:
            log.warning("provider.stripe_mode_mismatch", event_type=event_type)
            return None
        dedupe_key = str(event["id"])
        if event_type in PAYMENT_INTENT_EVENTS or event_type in SESSION_EVENTS:
            is_session = event_type in SESSION_EVENTS
            expected = "checkout.session" if is_session else "payment_intent"
            if obj.get("object") != expected:
                raise ValueError(f"{event_type} must carry a {expected}")
            state = session_state(obj) if is_session else intent_state(obj)
            if state.reference is None:
                return None  # not created by tillpay
            return WebhookNotice(
                dedupe_key=dedupe_key,
                event_type=event_type,
                kind="payment",
                reference=state.reference,
                provider_object_id=state.provider_object_id,
                status=state.status,
                amount=state.amount,
                currency=state.currency,
            )
        refund: Mapping[str, Any] | None = None
        if event_type in REFUND_EVENTS:
            refund = obj
        elif event_type == "charge.refunded":
            # Newer API versions no longer include the charge's refunds; then the
            # refund.* events (and the janitor) carry the news instead.
            listed = (obj.get("refunds") or {}).get("data") or []
            refunds = [r for r in listed if isinstance(r, Mapping) and r.get("id")]
            refund = max(refunds, key=lambda r: r.get("created") or 0) if refunds else None
        if refund is None:
            return None
        if refund.get("object") != "refund":
            raise ValueError(f"{event_type} must carry a refund")
        refunded = refund_state(refund)
        return WebhookNotice(
            dedupe_key=dedupe_key,
            event_type=event_type,
            kind="refund",
            reference=metadata_reference(refund),
            provider_object_id=refund.get("payment_intent"),
            refund_status=refunded.status,
            provider_refund_id=refunded.provider_refund_id,
            amount=refunded.amount,
            currency=object_currency(refund),
        )
