"""API keys: created by an administrator, shown once, stored as a SHA-256 hash.

Format ``tp_<env>_<43 base62 characters><6 base62 checksum characters>``: the prefix tells
the environment (``live`` in production, ``test`` anywhere else) and lets secret scanners
find a leaked key; the checksum (CRC32 of the rest) lets them, and tillpay, tell a real key
from a typo without a database lookup. A key is refused in the other environment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import string
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Scope
from tillpay.accounts.principal import CredentialKind, Principal
from tillpay.audit.service import Actor, record
from tillpay.credentials.models import ApiKey
from tillpay.kit.db import Database, utcnow
from tillpay.kit.errors import NotFound, Unauthorized
from tillpay.kit.logging import get_logger

log = get_logger("tillpay.authz")

PREFIX = "tp_"
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 43  # 43 * log2(62) ≈ 256 bits
_CHECKSUM_LENGTH = 6
# Writing last_used_at on every request would turn each read into a write; a minute's
# resolution is what an operator needs to spot an unused or a leaked key.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# A scope later withdrawn from the code is ignored, not an error, on keys that hold it.
_SCOPE_VALUES = frozenset(s.value for s in Scope)


def environment_of(settings_environment: str) -> str:
    return "live" if settings_environment == "production" else "test"


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), _CHECKSUM_LENGTH)


def generate(environment: str) -> str:
    """A new key's secret for ``environment`` (``live`` or ``test``)."""
    head = f"{PREFIX}{environment}_" + "".join(
        secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH)
    )
    return head + _checksum(head)


def well_formed(token: str) -> str | None:
    """The environment a key names, or None when it is not a well-formed key."""
    env, sep, _rest = token[len(PREFIX) :].partition("_")
    if not token.startswith(PREFIX) or not sep or env not in ("live", "test"):
        return None
    expected = len(PREFIX) + len(env) + 1 + _BODY_LENGTH + _CHECKSUM_LENGTH
    if len(token) != expected or any(c not in _ALPHABET for c in token[expected - 49 :]):
        return None
    head, check = token[:-_CHECKSUM_LENGTH], token[-_CHECKSUM_LENGTH:]
    return env if secrets.compare_digest(_checksum(head), check) else None


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _ip_allowed(ip: str | None, allowed: Sequence[str] | None) -> bool:
    if allowed is None:
        return True
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)


_BY_HASH = select(
    ApiKey.id,
    ApiKey.merchant,
    ApiKey.environment,
    ApiKey.scopes,
    ApiKey.allowed_ips,
    ApiKey.expires_at,
    ApiKey.revoked_at,
    ApiKey.last_used_at,
    ApiKey.created_at,
).where(ApiKey.secret_hash == bindparam("secret_hash"))


def _refused(reason: str, key_id: str | None = None) -> Unauthorized:
    # The reason is logged, never told: a caller holding a revoked or restricted key
    # learns nothing it could use.
    log.info("authz.api_key_rejected", reason=reason, key_id=key_id)
    return Unauthorized("The API key is invalid, expired or revoked.", code="invalid_credentials")


async def authenticate(
    database: Database, token: str, *, environment: str, ip: str | None
) -> Principal:
    """The principal an API key stands for. :class:`Unauthorized` for any problem: not a
    key, another environment's key, unknown, revoked, expired, or used from an address
    outside its allow-list. Checked against the database on every request, so revocation
    bites at once."""
    env = well_formed(token)
    if env is None:
        raise _refused("malformed")
    if env != environment:
        raise _refused("wrong_environment")
    async with database.read_connection() as db:
        row = (await db.execute(_BY_HASH, {"secret_hash": hash_secret(token)})).one_or_none()
    if row is None:
        raise _refused("unknown")
    now = utcnow()
    if row.revoked_at is not None:
        raise _refused("revoked", row.id)
    if row.expires_at is not None and row.expires_at <= now:
        raise _refused("expired", row.id)
    if not _ip_allowed(ip, row.allowed_ips):
        raise _refused("ip_not_allowed", row.id)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        await _touch(database, row.id, now)
    return Principal(
        user_id=row.id,
        role=None,
        session_id="",
        mfa=False,
        auth_time=row.created_at,
        email_verified=False,
        totp_enabled=False,
        ip=ip,
        kind=CredentialKind.API_KEY,
        scopes=frozenset(Scope(s) for s in row.scopes if s in _SCOPE_VALUES),
        merchant=row.merchant,
        credential=f"api_key:{row.id}",
    )


async def _touch(database: Database, key_id: str, now: datetime) -> None:
    # Its own short transaction, guarded so concurrent requests write it once a minute.
    async with database.transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                (ApiKey.last_used_at.is_(None))
                | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
        )


class Created:
    """A key just created: the row, and its secret (never retrievable again)."""

    def __init__(self, key: ApiKey, secret: str) -> None:
        self.key, self.secret = key, secret


async def create(
    session: AsyncSession,
    actor: Actor,
    *,
    environment: str,
    name: str,
    merchant: str,
    scopes: Sequence[Scope],
    expires_at: datetime | None,
    allowed_ips: Sequence[str] | None,
) -> Created:
    secret = generate(environment)
    key = ApiKey(
        name=name,
        merchant=merchant,
        environment=environment,
        secret_hash=hash_secret(secret),
        hint=secret[-4:],
        scopes=sorted(s.value for s in set(scopes)),
        allowed_ips=list(allowed_ips) if allowed_ips is not None else None,
        expires_at=expires_at,
        created_by=actor.id,
    )
    session.add(key)
    await session.flush()
    details: dict[str, Any] = {"name": name, "merchant": merchant, "scopes": key.scopes}
    await record(
        session, actor, "api_key.created", target_type="api_key", target_id=key.id, details=details
    )
    return Created(key, secret)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(
        (await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).all()
    )


async def revoke(session: AsyncSession, actor: Actor, key_id: str) -> None:
    """Revoke a key at once (idempotent: revoking a revoked key changes nothing)."""
    key = await session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await record(session, actor, "api_key.revoked", target_type="api_key", target_id=key.id)
