"""The long-lived collaborators of the accounts domain, built once per application."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis.asyncio as redis_asyncio

from tillpay.accounts.keys import KeyStore
from tillpay.kit.db import Database
from tillpay.kit.jwt import TokenKind, TokenService
from tillpay.kit.passwords import HashParams, PasswordHasher
from tillpay.kit.ratelimit import Lockout, RateLimiter
from tillpay.notifications.mail import Mailer
from tillpay.settings import Settings

AUTH_STATE_TTL_SECONDS = 30


class AuthStateCache:
    """Per-session authorization state (revoked? role? active?) cached in Redis.

    Entries are deleted whenever the state changes — in the transaction and again after
    it commits — so revocation takes effect on the next request; the short TTL bounds
    any residual staleness if Redis misbehaves. Without Redis every request reads the
    database (two primary-key look-ups)."""

    def __init__(self, client: redis_asyncio.Redis | None, *, prefix: str = "tillpay") -> None:
        self.client = client
        self._prefix = f"{prefix}:authstate:"

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}{session_id}"

    async def get(self, session_id: str) -> dict[str, Any] | None:
        if self.client is None:
            return None
        try:
            raw = await self.client.get(self._key(session_id))
        except Exception:  # noqa: BLE001 - a cache outage falls back to the database
            return None
        return json.loads(raw) if raw else None

    async def put(self, session_id: str, state: dict[str, Any]) -> None:
        if self.client is None:
            return
        # Best effort: the database stays authoritative.
        with contextlib.suppress(Exception):
            await self.client.set(
                self._key(session_id), json.dumps(state), ex=AUTH_STATE_TTL_SECONDS
            )

    async def invalidate(self, session_ids: Iterable[str]) -> None:
        keys = [self._key(s) for s in session_ids]
        if self.client is None or not keys:
            return
        with contextlib.suppress(Exception):
            await self.client.delete(*keys)


@dataclass
class AccountsRuntime:
    settings: Settings
    database: Database
    hasher: PasswordHasher
    keys: KeyStore
    mailer: Mailer
    lockout: Lockout | None
    cache: AuthStateCache

    @property
    def secret(self) -> bytes:
        return self.settings.secret_key.get_secret_value().encode()

    async def tokens(self) -> TokenService:
        return TokenService(
            await self.keys.ring(), issuer=self.settings.issuer, audience=self.settings.jwt_audience
        )

    async def verify_token(self, token: str, kind: TokenKind) -> dict[str, Any]:
        """Verify a token of ``kind``; raises ``InvalidToken``."""
        return (await self.tokens()).verify(token, kind)


def build_runtime(
    settings: Settings,
    database: Database,
    *,
    mailer: Mailer,
    limiter: RateLimiter | None,
    redis_client: redis_asyncio.Redis | None,
) -> AccountsRuntime:
    """``limiter`` stores login lockouts (not the rate limits: lockout is independent of
    ``TILLPAY_RATELIMIT_ENABLED``); None disables lockout (one-shot CLI commands)."""
    params = HashParams(
        memory_cost=settings.password_hash_memory_kib,
        time_cost=settings.password_hash_iterations,
        # The settings refuse weak costs outside the test environment.
        allow_weak_for_tests=settings.environment == "test",
    )
    keep_for = timedelta(
        seconds=max(settings.access_token_ttl_seconds, settings.mfa_token_ttl_seconds) + 60
    )
    lockout = (
        Lockout(
            limiter,
            "login",
            threshold=settings.login_lockout_threshold,
            base_seconds=settings.login_lockout_base_seconds,
            max_seconds=settings.login_lockout_max_seconds,
        )
        if limiter is not None
        else None
    )
    return AccountsRuntime(
        settings=settings,
        database=database,
        hasher=PasswordHasher(params),
        keys=KeyStore(database, settings.secret_key.get_secret_value().encode(), keep_for=keep_for),
        mailer=mailer,
        lockout=lockout,
        cache=AuthStateCache(redis_client, prefix=settings.redis_key_prefix),
    )
