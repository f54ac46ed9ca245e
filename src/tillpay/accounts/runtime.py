"""The long-lived collaborators of the accounts domain, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tillpay.accounts.keys import KeyStore
from tillpay.kit.db import Database
from tillpay.kit.jwt import TokenKind, TokenService, VerifiedTokens
from tillpay.kit.passwords import HashParams, PasswordHasher, default_hash_concurrency
from tillpay.kit.ratelimit import Lockout, RateLimiter
from tillpay.notifications.mail import Mailer
from tillpay.settings import Settings

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from tillpay.accounts.principal import Principal


class MachineCredentials(Protocol):
    """Resolves API keys and service tokens (``credentials/runtime.py``)."""

    async def authenticate(self, token: str, *, request: HTTPConnection) -> Principal | None:
        """The machine principal ``token`` stands for; None when it is not a machine
        credential (then it is read as a person's access token); Unauthorized when it is
        one but is refused."""
        ...


@dataclass
class AccountsRuntime:
    settings: Settings
    database: Database
    hasher: PasswordHasher
    keys: KeyStore
    mailer: Mailer
    lockout: Lockout | None
    # Per-address budgets for account mail (policy ``account_mail``); None: limits off.
    limiter: RateLimiter | None = None
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)

    @property
    def secret(self) -> bytes:
        return self.settings.secret_key.get_secret_value().encode()

    async def tokens(self) -> TokenService:
        return TokenService(
            await self.keys.ring(),
            issuer=self.settings.issuer,
            audience=self.settings.jwt_audience,
            verified=self.verified_tokens,
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
        hasher=PasswordHasher(
            params,
            max_concurrency=settings.password_hash_concurrency or default_hash_concurrency(),
        ),
        keys=KeyStore(database, settings.secret_key.get_secret_value().encode(), keep_for=keep_for),
        mailer=mailer,
        lockout=lockout,
        limiter=limiter,
    )
