"""Test harness: the real ASGI app over HTTP (httpx), on SQLite and on PostgreSQL + Redis.

Every test that uses ``client``/``make_client`` runs once per backend. With ``CI=true`` an
unreachable PostgreSQL or Redis fails the run instead of skipping the variant.
``TILLPAY_TEST_BACKENDS=sqlite`` limits a local run to one backend.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.transport import RoutingTransport
from tillpay import migrate
from tillpay.app import create_app
from tillpay.kit.config import database_config
from tillpay.kit.db import Database
from tillpay.models import Base
from tillpay.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_DSN = os.environ.get(
    "TILLPAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("TILLPAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Each run writes only keys under its own prefix and deletes only those: several runs (or
# other programs) can share one Redis without stepping on each other.
REDIS_TEST_PREFIX = os.environ.get(
    "TILLPAY_TEST_REDIS_PREFIX", f"tillpay-test-{uuid.uuid4().hex[:12]}"
)
# One random secret per test session: keys sealed with it live in the shared test database.
SESSION_SECRET = secrets.token_urlsafe(48)
BACKENDS = [
    b.strip() for b in os.environ.get("TILLPAY_TEST_BACKENDS", "sqlite,postgres").split(",") if b
]


def service_unavailable(what: str) -> None:
    """Skip locally, fail on CI: the PostgreSQL/Redis variants are mandatory there."""
    if IN_CI:
        pytest.fail(f"{what} is required on CI but unreachable", pytrace=False)
    pytest.skip(f"{what} unreachable")


def _run_sync(func: Callable[..., Any], *args: Any) -> Any:
    # Alembic runs its own event loop; keep it off the test loop's thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(func, *args).result()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


PG_TEST_DB_PREFIX = "tillpay_test_"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _drop_orphaned_databases() -> None:
    """Drop test databases whose owning process (named in the database) is gone."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{PG_TEST_DB_PREFIX}%"
        )
        for row in rows:
            owner = row["datname"].removeprefix(PG_TEST_DB_PREFIX).split("_", 1)[0]
            if owner.isdigit() and not _pid_alive(int(owner)):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


def _redis_ok() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for this session and backend."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "tillpay.db"
        url = f"sqlite+aiosqlite:///{path}"
        _run_sync(migrate.upgrade, _base_settings(database_url=url))
        yield url
        return
    # The owning process id is part of the name, so a later run can drop what a killed
    # run left behind (and never what a live run is using).
    name = f"{PG_TEST_DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        _run_sync(asyncio.run, _drop_orphaned_databases())
        _run_sync(asyncio.run, _pg_admin(f'CREATE DATABASE "{name}"'))
        # A throw-away database need not wait for the WAL to reach the disk at each commit
        # (only this database; transactions stay atomic and isolated).
        _run_sync(asyncio.run, _pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    except Exception:
        service_unavailable("PostgreSQL")
    try:
        if not _redis_ok():
            service_unavailable("Redis")
        url = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
        url = f"{url}/{name}"
        _run_sync(migrate.upgrade, _base_settings(database_url=url))
        yield url
    finally:
        # Also on Ctrl-C / SIGTERM (both end the run through KeyboardInterrupt, see
        # pytest_configure), so an interrupted run leaves no database behind.
        _run_sync(asyncio.run, _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", autouse=True)
def _own_redis_keys_deleted() -> Iterator[None]:
    """At the end of the run (Ctrl-C and SIGTERM included), delete this run's Redis keys,
    whichever tests wrote them (any backend, subprocesses sharing the prefix)."""
    yield
    if _redis_ok():
        _run_sync(asyncio.run, _delete_redis_keys_at(REDIS_TEST_URL))


_SETTINGS_CACHE: dict[str, Settings] = {}


def _base_settings(**overrides: Any) -> Settings:
    """Test settings; built once per distinct input (building costs ~5 ms of CPU, and the
    suite asks thousands of times). The input includes the process's TILLPAY_ variables
    and the working directory (a `.env` there is read)."""
    # Every test has its own mailbox (mail_dir): build without it, then copy with it, so
    # tests that differ only there share one validated build.
    mail_dir = overrides.pop("mail_dir", None)
    ambient = sorted((k, v) for k, v in os.environ.items() if k.startswith("TILLPAY_"))
    key = repr((sorted(overrides.items()), ambient, os.getcwd()))
    cached = _SETTINGS_CACHE.get(key)
    if cached is None:
        cached = _SETTINGS_CACHE[key] = _build_settings(**overrides)
    if mail_dir is None:
        return cached
    return cached.model_copy(update={"mail_dir": Path(mail_dir)})


def _build_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": SESSION_SECRET,
        "worker_in_process": False,
        "log_json": True,
        "ratelimit_global": "100000/minute",
        # Arranging a test signs several users in from one IP; tests of the limits
        # themselves set tight policies explicitly.
        "ratelimit_policies": {
            "auth": "10000/minute",
            "payments": "10000/minute",
            "webhooks": "10000/minute",
        },
        "data_dir": Path(os.environ.get("TILLPAY_TEST_DATA_DIR", "/tmp/tillpay-test")),
        "redis_key_prefix": REDIS_TEST_PREFIX,
        # Argon2id at the OWASP cost is ~50 ms of CPU per hash and the suite hashes
        # thousands of times; tests of the cost itself set it explicitly.
        "password_hash_memory_kib": 64,
        "password_hash_iterations": 1,
    }
    values.update(overrides)
    if values["environment"] != "test":
        # Cheap hashing is refused outside the test environment.
        for name in ("password_hash_memory_kib", "password_hash_iterations"):
            if name not in overrides:
                del values[name]
    return Settings(**values)


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """This test's mailbox: the file mailer writes `.eml` files here."""
    return tmp_path / "mail"


@pytest.fixture
def make_settings(backend: str, database_url: str, mail_dir: Path) -> Callable[..., Settings]:
    """Settings for this backend; PostgreSQL runs also use Redis."""
    redis_url = REDIS_TEST_URL if backend == "postgres" else None

    def factory(**overrides: Any) -> Settings:
        overrides.setdefault("redis_url", redis_url)
        overrides.setdefault("mail_dir", mail_dir)
        overrides.setdefault("database_url", database_url)
        return _base_settings(**overrides)

    return factory


class _SharedDatabases:
    """One open :class:`Database` per database configuration, shared by the apps of a test
    session: SQLAlchemy caches compiled statements per engine, and a new engine per test
    compiled every statement again (~1-2 ms each; measured 29 → 20 ms for a test's first
    registration). Apps given one do not dispose it; the session does, before it drops
    the test database."""

    def __init__(self) -> None:
        self._databases: dict[str, Database] = {}

    def get(self, settings: Settings) -> Database:
        config = database_config(settings)
        # The URL and the key password are kept out of the config's repr.
        key = repr((config.url, config.ssl_key_password, config))
        database = self._databases.get(key)
        if database is None:
            database = self._databases[key] = Database.from_settings(settings)
        return database

    async def close(self) -> None:
        for database in self._databases.values():
            await database.dispose()
        self._databases.clear()


@pytest.fixture(scope="session")
async def _shared_databases(database_url: str) -> AsyncIterator[_SharedDatabases]:
    # Depends on database_url so the engines are disposed before that database is dropped.
    shared = _SharedDatabases()
    try:
        yield shared
    finally:
        await shared.close()


class _Cleaner:
    """Empties the test database and deletes this run's Redis keys before a test, over the
    session's shared database and a Redis client kept for the session (a fresh engine and
    Redis client per test cost ~45 ms of the ~100 ms a test's arrangement took)."""

    def __init__(self, databases: _SharedDatabases) -> None:
        self._databases = databases
        self._redis: Any = None
        # Children first, so no DELETE waits on a foreign key; one round trip for all.
        deletes = " ".join(
            f'DELETE FROM "{t.name}";' for t in reversed(Base.metadata.sorted_tables)
        )
        self._script = f"BEGIN; {deletes} COMMIT;"
        # PostgreSQL's triggers refuse to delete audit rows; the test superuser empties
        # the database in replica mode, which fires no ordinary trigger (docs/operations.md).
        self._pg_script = f"BEGIN; SET LOCAL session_replication_role = replica; {deletes} COMMIT;"

    async def __call__(self, settings: Settings) -> None:
        try:
            await self._delete_rows(settings)
        except Exception:
            # A test may have killed this connection (fault tests terminate backends):
            # start over on a new one, once.
            await self._databases.get(settings).engine.dispose()
            await self._delete_rows(settings)
        if settings.redis_url is not None:
            await self._delete_keys(settings.redis_url.get_secret_value())

    async def _delete_rows(self, settings: Settings) -> None:
        async with self._databases.get(settings).engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            if hasattr(driver, "executescript"):  # aiosqlite
                await driver.executescript(self._script)
            else:  # asyncpg: a query without arguments may hold several statements
                await driver.execute(self._pg_script)

    async def _delete_keys(self, url: str) -> None:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(url)
        await _delete_redis_keys(self._redis)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


@pytest.fixture(scope="session")
async def _cleaner(_shared_databases: _SharedDatabases) -> AsyncIterator[_Cleaner]:
    cleaner = _Cleaner(_shared_databases)
    try:
        yield cleaner
    finally:
        await cleaner.close()


async def _delete_redis_keys(client: Any) -> None:
    """Delete this run's keys (never FLUSHDB: the database may hold others' keys)."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{REDIS_TEST_PREFIX}:*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def _delete_redis_keys_at(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await _delete_redis_keys(client)
    finally:
        await client.aclose()


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def _unrouted(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"provider transport used before its app existed: {request.url}")


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], _shared_databases: _SharedDatabases
) -> ClientFactory:
    """Start an app with setting overrides and yield an HTTP client bound to it."""

    @asynccontextmanager
    async def factory(
        client_ip: str = "127.0.0.1",
        setup: Callable[[FastAPI], None] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(**overrides)
        # Provider adapters (and the sandbox's webhook sender) reach this very app; tests
        # mount provider emulators on their API hosts (tests/transport.py) through
        # app.state.provider_transport, the tests' handle (the app never reads it).
        routing = RoutingTransport(httpx.MockTransport(_unrouted))
        app = create_app(
            settings, provider_transport=routing, database=_shared_databases.get(settings)
        )
        routing.default = httpx.ASGITransport(app=app)
        app.state.provider_transport = routing
        if setup is not None:
            setup(app)
        # Generous timeouts: a loaded 2-core machine can take seconds to start an app.
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
            # The app itself, not manager.app: asgi-lifespan would hand every request the
            # same scope["state"] dict, so parallel requests would overwrite each other's
            # request id (servers copy it per request; tillpay keeps no lifespan state).
            transport = httpx.ASGITransport(app=app, client=(client_ip, 51234))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost"
            ) as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return factory


@pytest.fixture
async def client(
    make_client: ClientFactory, make_settings: Callable[..., Settings], _cleaner: _Cleaner
) -> AsyncIterator[httpx.AsyncClient]:
    """A client against an app with default test settings and an empty database."""
    await _cleaner(make_settings())
    async with make_client() as c:
        yield c


@pytest.fixture
async def clean_db(make_settings: Callable[..., Settings], _cleaner: _Cleaner) -> None:
    await _cleaner(make_settings())


@pytest.fixture
def accounts(client: httpx.AsyncClient, mail_dir: Path) -> Any:
    """Drives the accounts API (see tests/accounts/helpers.py) for ``client``."""
    from tests.accounts.helpers import Accounts

    return Accounts(client, mail_dir)


def app_of(client: httpx.AsyncClient) -> FastAPI:
    return client.app  # type: ignore[attr-defined]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends the run like Ctrl-C: pytest then tears fixtures down (databases, keys,
    servers) instead of dying with them still there."""
    signal.signal(signal.SIGTERM, _interrupt)


# The slowest modules (seconds per test: fuzzing, subprocesses, browsers, races) run first,
# so with `--dist worksteal` no worker is left with one at the end while the others idle.
SLOW_FIRST = (
    "tests/security/test_fuzz_api.py",
    "tests/harness/",
    "tests/e2e/",
    "tests/ops/test_cli_serve.py",
    "tests/concurrency/",
    "tests/jobs/test_worker_processes.py",
    "tests/webhooks/test_worker_processes.py",
    "tests/realtime/",
    "tests/hub/test_end_to_end.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many tests ran on each backend, so CI output shows the PostgreSQL variant."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            for backend in ("sqlite", "postgres"):
                if f"[{backend}" in nodeid or f"-{backend}]" in nodeid or f"-{backend}-" in nodeid:
                    counts.setdefault(backend, {}).setdefault(outcome, 0)
                    counts[backend][outcome] += 1
    if counts:
        terminalreporter.section("tillpay backends")
        for backend, by_outcome in sorted(counts.items()):
            detail = ", ".join(f"{n} {o}" for o, n in sorted(by_outcome.items()))
            terminalreporter.write_line(f"{backend}: {detail}")
