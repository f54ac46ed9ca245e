"""The enabled provider adapters, built from the settings."""

from __future__ import annotations

import httpx

from tillpay.payments.providers.base import ProviderAdapter
from tillpay.payments.providers.cryptomus import CryptomusAdapter
from tillpay.payments.providers.paystack import PaystackAdapter
from tillpay.payments.providers.razorpay import RazorpayAdapter
from tillpay.payments.providers.sandbox import SandboxAdapter
from tillpay.payments.providers.stripe import StripeAdapter
from tillpay.settings import Settings


class ProviderRegistry:
    def __init__(self, adapters: dict[str, ProviderAdapter]) -> None:
        self._adapters = adapters

    def get(self, name: str) -> ProviderAdapter | None:
        return self._adapters.get(name)

    def names(self) -> list[str]:
        return sorted(self._adapters)

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()


def build_registry(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> ProviderRegistry:
    """Adapters whose settings are complete. ``transport`` lets tests route provider HTTP
    to in-process emulators."""
    adapters: dict[str, ProviderAdapter] = {}
    if settings.sandbox_on:
        adapters["sandbox"] = SandboxAdapter(settings, transport=transport)
    if settings.cryptomus_merchant_id and settings.cryptomus_payment_api_key:
        adapters["cryptomus"] = CryptomusAdapter(settings, transport=transport)
    if settings.paystack_secret_key is not None:
        adapters["paystack"] = PaystackAdapter(settings, transport=transport)
    if (
        settings.razorpay_key_id
        and settings.razorpay_key_secret is not None
        and settings.razorpay_key_secret.get_secret_value()
        and settings.razorpay_webhook_secret is not None
        and settings.razorpay_webhook_secret.get_secret_value()
    ):
        adapters["razorpay"] = RazorpayAdapter(settings, transport=transport)
    if (
        settings.stripe_secret_key is not None
        and settings.stripe_secret_key.get_secret_value()
        and any(s.get_secret_value() for s in settings.stripe_webhook_secrets)
    ):
        adapters["stripe"] = StripeAdapter(settings, transport=transport)
    return ProviderRegistry(adapters)
