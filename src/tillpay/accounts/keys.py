"""JWT signing keys persisted in the database, shared by every API process.

The ring is cached per process and reloaded periodically, and on demand when a token
names an unknown ``kid`` (another process may have rotated) — but at most once per
``RELOAD_MIN_INTERVAL`` so random kids cannot make us hammer the database.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import JwtSigningKey
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jwt import (
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

RELOAD_INTERVAL = 300.0
RELOAD_MIN_INTERVAL = 5.0


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
    """Add a new signing key and retire older ones once ``keep_for`` has passed.

    Retired keys lose their private half but still verify tokens until then; ``keep_for``
    must cover the longest token lifetime.
    """
    new = await create_key(session, secret)
    cutoff = utcnow() - keep_for
    rows = (
        await session.execute(select(JwtSigningKey).where(JwtSigningKey.kid != new.kid))
    ).scalars()
    for row in rows:
        if row.retired_at is None:
            row.retired_at = utcnow()
            row.private_key_encrypted = None
        elif row.retired_at < cutoff:
            await session.delete(row)
    return new.kid


async def load_ring(session: AsyncSession, secret: bytes, *, keep_for: timedelta) -> KeyRing:
    rows = (await session.execute(select(JwtSigningKey))).scalars().all()
    cutoff = utcnow() - keep_for
    keys = []
    for row in rows:
        if row.retired_at is not None and row.retired_at < cutoff:
            continue
        private = (
            decrypt_private_key(row.private_key_encrypted, row.kid, secret)
            if row.private_key_encrypted is not None
            else None
        )
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
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def ring(self) -> KeyRing:
        if self._ring is None or time.monotonic() - self._loaded_at > RELOAD_INTERVAL:
            await self.reload()
        assert self._ring is not None
        return self._ring

    async def reload(self, *, if_older_than: float = 0.0) -> None:
        async with self._lock:
            if self._ring is not None and time.monotonic() - self._loaded_at < if_older_than:
                return
            async with self.database.session() as session, session.begin():
                ring = await load_ring(session, self.secret, keep_for=self.keep_for)
                if not _can_sign(ring):
                    await create_key(session, self.secret)
                    log.info("jwt.signing_key_created")
                    ring = await load_ring(session, self.secret, keep_for=self.keep_for)
            self._ring = ring
            self._loaded_at = time.monotonic()

    async def refresh_for_unknown_kid(self) -> KeyRing:
        await self.reload(if_older_than=RELOAD_MIN_INTERVAL)
        assert self._ring is not None
        return self._ring
