"""Collaborators of the payments domain, built once per application (or worker)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tillpay.kit.db import Database
from tillpay.payments.providers.registry import ProviderRegistry, build_registry
from tillpay.settings import Settings


@dataclass
class PaymentsRuntime:
    settings: Settings
    database: Database
    providers: ProviderRegistry

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
