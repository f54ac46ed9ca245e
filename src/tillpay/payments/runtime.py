"""Collaborators of the payments domain, built once per application (or worker)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tillpay.kit.db import Database
from tillpay.kit.errors import Unprocessable
from tillpay.payments.providers.base import ProviderAdapter
from tillpay.payments.providers.registry import ProviderRegistry, build_registry
from tillpay.settings import Settings


@dataclass
class PaymentsRuntime:
    settings: Settings
    database: Database
    providers: ProviderRegistry

    def adapter(self, name: str) -> ProviderAdapter:
        """The enabled adapter called ``name`` (422 when it is not enabled)."""
        adapter = self.providers.get(name)
        if adapter is None:
            raise Unprocessable(
                f"The provider {name!r} is not enabled.", code="provider_unavailable"
            )
        return adapter

    def enabled(self) -> list[tuple[str, ProviderAdapter]]:
        """The providers whose settings are complete, by name (``GET /v1/payments/providers``
        and the demo shop's checkout list them)."""
        found = [(name, self.providers.get(name)) for name in self.providers.names()]
        return [(name, adapter) for name, adapter in found if adapter is not None]

    async def aclose(self) -> None:
        await self.providers.aclose()


def build_payments_runtime(
    settings: Settings, database: Database, *, transport: httpx.AsyncBaseTransport | None = None
) -> PaymentsRuntime:
    return PaymentsRuntime(
        settings=settings,
        database=database,
        providers=build_registry(settings, transport=transport),
    )
