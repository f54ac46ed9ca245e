"""JWT signing keys persisted in the database, shared by every API process.

Each process loads the ring at start-up and reloads it in the background every
``RELOAD_INTERVAL`` — never inside a request, so a request never waits on a second
database connection (which SQLite would serialise behind the request's own lock).

A new key is published before it is used: it only signs once it is older than
``ACTIVATION_DELAY`` (longer than the reload interval), so by then every process can
verify it. Until then the previous key keeps signing.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import JwtSigningKey
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jwt import (
    KeyDecryptionError,
    KeyRing,
    SigningKey,
    decrypt_private_key,
    encrypt_private_key,
    generate_signing_key,
    load_public_key,
    serialize_public_key,
)
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

RELOAD_INTERVAL = 60.0
RETRY_INTERVAL = 5.0
ACTIVATION_DELAY = timedelta(seconds=2 * RELOAD_INTERVAL)


async def create_key(session: AsyncSession, secret: bytes) -> JwtSigningKey:
    """Generate a new signing key; it becomes the signing key (newest wins)."""
    key = generate_signing_key()
    assert key.private_key is not None
    row = JwtSigningKey(
        kid=key.kid,
        public_key=serialize_public_key(key.public_key),
        private_key_encrypted=encrypt_private_key(key.private_key, key.kid, secret),
        created_at=key.created_at,
    )
    session.add(row)
    await session.flush()
    return row


async def rotate(session: AsyncSession, secret: bytes, *, keep_for: timedelta) -> str:
    """Add a new signing key. It starts signing after ``ACTIVATION_DELAY``; then older keys
    are retired: they lose their private half but verify tokens for ``keep_for`` more."""
    new = await create_key(session, secret)
    await retire_superseded(session, keep_for=keep_for)
    return new.kid


async def retire_superseded(session: AsyncSession, *, keep_for: timedelta) -> None:
    """Retire signers older than the active one; drop retired keys past ``keep_for``."""
    rows = list((await session.execute(select(JwtSigningKey))).scalars().all())
    signer = _active_signer(rows)
    active = next((r for r in rows if r.kid == signer), None)
    cutoff = utcnow() - keep_for
    for row in rows:
        if row.retired_at is not None and row.retired_at < cutoff:
            await session.delete(row)
        elif active is not None and row.retired_at is None and row.created_at < active.created_at:
            row.retired_at = utcnow()
            row.private_key_encrypted = None


def _active_signer(rows: list[JwtSigningKey]) -> str | None:
    """The newest published key with a private half; when none is old enough yet (a fresh
    installation), the longest-known unpublished one."""
    signers = sorted(
        (r for r in rows if r.private_key_encrypted is not None and r.retired_at is None),
        key=lambda r: r.created_at,
        reverse=True,
    )
    published = [r for r in signers if r.created_at <= utcnow() - ACTIVATION_DELAY]
    chosen = published[0] if published else (signers[-1] if signers else None)
    return chosen.kid if chosen else None


async def load_ring(session: AsyncSession, secret: bytes, *, keep_for: timedelta) -> KeyRing:
    rows = list((await session.execute(select(JwtSigningKey))).scalars().all())
    cutoff = utcnow() - keep_for
    signer = _active_signer(rows)
    keys = []
    for row in rows:
        if row.retired_at is not None and row.retired_at < cutoff:
            continue
        private = None
        if row.private_key_encrypted is not None and row.kid == signer:
            try:
                private = decrypt_private_key(row.private_key_encrypted, row.kid, secret)
            except KeyDecryptionError:
                # The server secret changed: keep verifying with the public half; a new
                # signing key is created by the caller.
                log.error("jwt.signing_key_unreadable", kid=row.kid)
        keys.append(
            SigningKey(
                kid=row.kid,
                private_key=private,
                public_key=load_public_key(row.public_key),
                created_at=row.created_at,
            )
        )
    return KeyRing(keys)


def _can_sign(ring: KeyRing) -> bool:
    try:
        ring.signing_key  # noqa: B018 - raises LookupError when nothing can sign
    except LookupError:
        return False
    return True


class KeyStore:
    """The process's cached view of the signing keys."""

    def __init__(self, database: Database, secret: bytes, *, keep_for: timedelta) -> None:
        self.database = database
        self.secret = secret
        self.keep_for = keep_for
        self._ring: KeyRing | None = None
        self._task: asyncio.Task[None] | None = None

    async def ring(self) -> KeyRing:
        if self._ring is None:
            await self.reload()
        assert self._ring is not None
        return self._ring

    async def reload(self) -> None:
        """Load the keys (creating the first one if there is none)."""
        async with self.database.session() as session, session.begin():
            ring = await load_ring(session, self.secret, keep_for=self.keep_for)
            if not _can_sign(ring):
                # Nothing usable signs (first start, or the secret changed): retire what
                # cannot be used any more and start a new key at once.
                await session.execute(
                    update(JwtSigningKey)
                    .where(JwtSigningKey.retired_at.is_(None))
                    .values(retired_at=utcnow(), private_key_encrypted=None)
                )
                await create_key(session, self.secret)
                log.info("jwt.signing_key_created")
                ring = await load_ring(session, self.secret, keep_for=self.keep_for)
            else:
                await retire_superseded(session, keep_for=self.keep_for)
        self._ring = ring

    async def start(self) -> None:
        """Load now, then keep reloading in the background. A database that is down at
        start-up does not stop the process (readiness reports it); loading is retried."""
        try:
            await self.reload()
        except (DBAPIError, OSError) as exc:
            # Database down or not migrated: an operational state, reported by /readyz;
            # a traceback every retry would only bury it.
            log.warning("jwt.key_load_failed", error_type=type(exc).__name__)
        except Exception:
            log.exception("jwt.key_load_failed")
        self._task = asyncio.create_task(self._reload_forever(), name="jwt-key-reload")

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(RETRY_INTERVAL if self._ring is None else RELOAD_INTERVAL)
            try:
                await self.reload()
            except (DBAPIError, OSError) as exc:
                log.warning("jwt.key_reload_failed", error_type=type(exc).__name__)
            except Exception:
                log.exception("jwt.key_reload_failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
