"""Database plumbing: declarative base with a constraint naming convention, engine
construction for SQLite and PostgreSQL (including verified TLS), and the per-request
unit of work.

Unit of work: :func:`get_db_session` is a function-scoped FastAPI dependency. FastAPI runs
its exit code after the endpoint returned (and its response was serialized) but before
the response is sent, so the commit happens first and a 2xx always means the data is
durable. Any exception rolls everything back: a failed request leaves nothing behind —
except a :class:`~tillpay.kit.errors.CommittedRefusal`, which commits and then propagates.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from tillpay.kit.config import (
    ConfigurationError,
    DatabaseConfig,
    HasDatabaseConfig,
    database_config,
)
from tillpay.kit.errors import AppError, CommittedRefusal

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every tillpay model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


M = TypeVar("M", bound=Base)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend.

    SQLite stores no offset, so values are normalised to UTC on the way in and tagged
    UTC on the way out; naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class TimestampMixin:
    """``created_at``/``updated_at`` columns maintained by the ORM."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


def _no_key_password() -> str:
    # Without a callback OpenSSL prompts on the terminal for an encrypted key, which
    # blocks a server at start-up (or fails with a bare EINVAL when there is no TTY).
    raise ConfigurationError(
        "TILLPAY_DATABASE_SSL_KEY is encrypted: set TILLPAY_DATABASE_SSL_KEY_PASSWORD"
    )


def build_ssl_context(source: DatabaseConfig | HasDatabaseConfig) -> ssl.SSLContext | None:
    """TLS for PostgreSQL per ``ssl_mode``; ``verify-full`` checks chain and host."""
    config = database_config(source)
    mode = config.ssl_mode
    if mode == "disable":
        return None
    cafile = str(config.ssl_root_cert) if config.ssl_root_cert else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "require":
        # libpq semantics: encrypt, but do not verify the server (only for private links).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
    if config.ssl_cert is not None:
        # An empty password counts as none, as it always has.
        password = config.ssl_key_password or None
        context.load_cert_chain(
            str(config.ssl_cert),
            keyfile=str(config.ssl_key) if config.ssl_key else None,
            password=password if password is not None else _no_key_password,
        )
    return context


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (the driver's implicit BEGIN is unreliable)
    # and enforce foreign keys, which SQLite leaves off by default.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: SQLite then serialises writers
    # instead of failing read-then-write transactions with SQLITE_BUSY, which is how
    # the embedded default keeps money paths free of lost updates. Read sessions
    # (autocommit) take no lock: each statement reads a committed snapshot (WAL).
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _drop_closed_connections(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # Instead of `pool_pre_ping` (a BEGIN/ping/ROLLBACK, 3 round trips per checkout):
    # a pooled connection whose server went away (restart, pg_terminate_backend, idle
    # timeout) has seen the socket close, which asyncpg records without a round trip.
    # DisconnectionError makes the pool discard it and hand out a fresh one.
    if record.driver_connection.is_closed():
        raise DisconnectionError("pooled connection was closed by the server")


def create_engine(source: DatabaseConfig | HasDatabaseConfig) -> AsyncEngine:
    """Create the async engine for the configured database."""
    config = database_config(source)
    url = config.url
    if config.is_sqlite:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    connect_args: dict[str, Any] = {
        "server_settings": {
            "application_name": "tillpay",
            "timezone": "UTC",
        },
    }
    if config.statement_timeout_ms:
        connect_args["server_settings"]["statement_timeout"] = str(config.statement_timeout_ms)
    # `disable` means no TLS at all: asyncpg would otherwise try (`prefer`) on every new
    # connection, one more round trip each.
    connect_args["ssl"] = build_ssl_context(config) or False
    engine = create_async_engine(
        url,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed_connections)
    return engine


class ReadOnlyViolation(RuntimeError):
    """A read session was asked to write: a programming error, never a client's."""


class ReadOnlySession(Session):
    """The ORM session of :meth:`Database.read_session`: refuses to flush or run DML."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlyViolation("a read session cannot write; use the unit of work")


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlyViolation("a read session cannot write; use the unit of work")


class Database:
    """The engine and session factory of one running application."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
        # Reads run in autocommit: no BEGIN/COMMIT round trips, no SQLite write lock; each
        # statement sees committed data as of its start. Same pool as the writers.
        self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = async_sessionmaker(
            self.read_engine,
            expire_on_commit=False,
            autoflush=False,
            sync_session_class=ReadOnlySession,
        )

    @classmethod
    def from_settings(cls, source: DatabaseConfig | HasDatabaseConfig) -> Database:
        """The database ``source`` (a config, or settings that describe one) configures."""
        return cls(create_engine(source))

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    def read_connection(self) -> AsyncConnection:
        """A connection for one Core read in autocommit, without an ORM session (the
        cheapest read there is; for rows, not objects)."""
        return self.read_engine.connect()

    def read_session(self) -> AsyncSession:
        """A session for reads only (see :class:`ReadOnlySession`), one statement at a time:
        a read that needs several statements to agree uses :meth:`transaction`."""
        return self.read_sessionmaker()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends (also by ``return``),
        rolled back when it raises."""
        async with self.sessionmaker() as session, session.begin():
            yield session


async def lock_row(session: AsyncSession, model: type[M], row_id: str) -> M:
    """``SELECT … FOR UPDATE`` one row by primary key, refreshing any stale identity-map copy
    (a no-op lock on SQLite, whose writers are already serialised)."""
    return (
        await session.execute(
            select(model)
            .where(model.id == row_id)  # type: ignore[attr-defined]
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def claim_due_rows(
    database: Database,
    model: type[M],
    due: Any,
    columns: Sequence[Any] = (),
    *,
    where: Sequence[Any] = (),
    order_by: Any,
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[tuple[Any, ...]]:
    """Claim up to ``limit`` rows of ``model`` whose ``due`` time has come, for this worker:
    ``(id, *columns)`` of each. The claim is a lease: ``due`` moves ``lease`` ahead in the
    same short transaction, and rows another worker is claiming are skipped (``FOR UPDATE
    SKIP LOCKED``; SQLite's single writer needs no skipping), so workers take disjoint
    batches. Handling a row sets its real next due time; a worker that dies leaves its
    rows to whoever finds them due once the lease lapses."""
    async with database.transaction() as session:
        rows = [
            tuple(row)
            for row in await session.execute(
                select(model.id, *columns)  # type: ignore[attr-defined]
                .where(*where, due <= now)
                .order_by(order_by)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ]
        if rows:
            await session.execute(
                update(model)
                .where(model.id.in_([row[0] for row in rows]))  # type: ignore[attr-defined]
                .values({due: now + lease})
            )
    return rows


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the request's transaction has committed (never on rollback).

    For effects outside the database that must not happen for changes that are later
    rolled back (e.g. notifying another process)."""
    session.info.setdefault("after_commit", []).append(callback)


FailureCheck = Callable[[AsyncSession], Awaitable[Exception | None]]


def on_unexpected_failure(request: Request, check: FailureCheck) -> None:
    """Have ``check`` explain an unexpected error of this request's unit of work.

    After the rollback it may return the error to answer with instead. Authentication uses
    it: a user deleted while their request ran makes its writes fail (foreign keys), and
    that is the token's 401, not a 500."""
    request.state.db_failure_check = check


async def _explained(
    request: Request, session: AsyncSession, exc: BaseException
) -> Exception | None:
    check: FailureCheck | None = getattr(request.state, "db_failure_check", None)
    if check is None or not isinstance(exc, Exception) or isinstance(exc, AppError):
        return None
    try:
        return await check(session)
    except Exception:  # noqa: BLE001 - the original error is reported instead
        return None
    finally:
        await session.rollback()


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit when the endpoint succeeded, else roll back."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        try:
            yield session
        except CommittedRefusal:
            # A refusal that keeps its writes: commit, then answer with the refusal.
            await _commit(session)
            raise
        except BaseException as exc:
            session.info.pop("after_commit", None)
            await session.rollback()
            replacement = await _explained(request, session, exc)
            if replacement is not None:
                raise replacement from exc
            raise
        else:
            await _commit(session)


async def _commit(session: AsyncSession) -> None:
    await session.commit()
    for callback in session.info.pop("after_commit", []):
        await callback()


DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only session for routes that only read (no unit of work to commit)."""
    database: Database = request.app.state.database
    async with database.read_session() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
