"""Development demo data: `tillpay dev` runs each domain's idempotent loader, listed here
(domains know nothing of this module)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.catalog.demo import load_catalog
from tillpay.kit.db import Database
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)

DemoLoader = Callable[[AsyncSession, Settings], Awaitable[None]]
# Idempotent loaders, in the order they run: running one twice must duplicate nothing.
LOADERS: list[tuple[str, DemoLoader]] = [("catalog", load_catalog)]


async def load_demo_data(settings: Settings, database: Database) -> list[str]:
    """Run every loader in one transaction; returns the loaders' names."""
    if settings.is_production:
        raise RuntimeError("demo data is development-only")
    names = [name for name, _ in LOADERS]
    async with database.session() as session, session.begin():
        for _name, loader in LOADERS:
            await loader(session, settings)
    log.info("demo.loaded", loaders=names)
    return names
