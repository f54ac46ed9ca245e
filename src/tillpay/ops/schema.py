"""Is the database schema at the latest migration?

Checked once at start-up (the database's Alembic revision against the packaged script
heads). While the answer is not "yes" (schema behind, or the database was unreachable)
API requests get a 503 problem saying to run ``tillpay migrate`` instead of a 500 per
missing table. Until the schema has once been found current, the check is repeated at
most every :data:`RECHECK_SECONDS` (a migration run after start-up is noticed); after
that it is never run again. While the database is unreachable the state is unknown and
requests pass, to fail as database outages do (503).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Final, Literal

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tillpay.kit.logging import get_logger
from tillpay.migrate import alembic_config
from tillpay.settings import Settings

log = get_logger(__name__)

RECHECK_SECONDS: Final = 1.0
MIGRATE_HINT: Final = "run `tillpay migrate`"

Status = Literal["current", "outdated", "unknown"]


@dataclass(frozen=True)
class Revisions:
    database: frozenset[str]
    heads: frozenset[str]

    @property
    def current(self) -> bool:
        return self.database == self.heads

    def describe(self) -> str:
        """One line for an operator, e.g. for the CLI's refusal to start."""
        found = ", ".join(sorted(self.database)) or "none (empty database)"
        wanted = ", ".join(sorted(self.heads))
        return (
            f"the database schema is at revision {found}, not at the latest ({wanted}): "
            f"{MIGRATE_HINT}"
        )


def script_heads(settings: Settings) -> frozenset[str]:
    """The head revision(s) of the packaged migrations."""
    return _heads_at(alembic_config(settings).get_main_option("script_location") or "")


@functools.cache
def _heads_at(script_location: str) -> frozenset[str]:
    # The scripts ship with the code: one read per process is enough (it imports every
    # migration file, ~10 ms that each app start paid before).
    config = Config()
    config.set_main_option("script_location", script_location)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def _database_heads(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


async def read_revisions(engine: AsyncEngine, heads: frozenset[str]) -> Revisions:
    """The database's revision(s) next to ``heads``; raises when the database is down."""
    async with engine.connect() as connection:
        database = await connection.run_sync(_database_heads)
    return Revisions(database=database, heads=heads)


class SchemaState:
    """The start-up schema check and its cached answer."""

    def __init__(self, engine: AsyncEngine, heads: frozenset[str]) -> None:
        self._engine = engine
        self._heads = heads
        self._status: Status = "unknown"
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def status(self) -> Status:
        return self._status

    async def check(self) -> Status:
        """The schema's status; queries the database only until it was once current."""
        if self._status == "current":
            return self._status
        async with self._lock:
            # Another task may have checked while this one waited for the lock.
            if time.monotonic() - self._checked_at < RECHECK_SECONDS:
                return self._status
            self._checked_at = time.monotonic()
            try:
                revisions = await read_revisions(self._engine, self._heads)
            except Exception as exc:  # noqa: BLE001 - unknown until the database answers
                log.warning("schema.check_failed", error_type=type(exc).__name__)
                self._status = "unknown"
                return self._status
            self._status = "current" if revisions.current else "outdated"
            if not revisions.current:
                log.error(
                    "schema.outdated",
                    database=sorted(revisions.database),
                    heads=sorted(revisions.heads),
                    hint=MIGRATE_HINT,
                )
            return self._status

    async def require_current(self) -> None:
        """Raise unless the schema is current (the readiness check)."""
        if await self.check() != "current":
            raise RuntimeError("database schema is not at the latest migration")
