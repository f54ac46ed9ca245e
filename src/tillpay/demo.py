"""Development demo data. Domains register idempotent loaders; `tillpay dev` runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.kit.db import Database
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)

DemoLoader = Callable[[AsyncSession, Settings], Awaitable[None]]
_LOADERS: list[tuple[str, DemoLoader]] = []


def demo_loader(name: str) -> Callable[[DemoLoader], DemoLoader]:
    """Register an idempotent loader: running it twice must not duplicate anything."""

    def decorator(func: DemoLoader) -> DemoLoader:
        _LOADERS.append((name, func))
        return func

    return decorator


async def load_demo_data(settings: Settings, database: Database) -> list[str]:
    """Run every registered loader in one transaction; returns the loaders' names."""
    if settings.is_production:
        raise RuntimeError("demo data is development-only")
    import tillpay.catalog.demo  # noqa: F401 - registers the catalog loader

    names = [name for name, _ in _LOADERS]
    async with database.session() as session, session.begin():
        for _name, loader in _LOADERS:
            await loader(session, settings)
    log.info("demo.loaded", loaders=names)
    return names
