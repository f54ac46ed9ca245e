"""The console's admin areas, one module each (orders, customers, vendors, API keys,
ledger, audit), mounted as one router (``app.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from tillpay.console import api_keys, audit, customers, ledger, orders, vendors

router = APIRouter(include_in_schema=False)
for area in (orders, customers, vendors, api_keys, ledger, audit):
    router.include_router(area.router)
