"""Service tokens: short-lived JWTs minted by a configured shop backend, accepted as
machine credentials (docs/service-tokens.md has the exact rules).

A bearer token is taken for a service token only when its (unverified) ``iss`` names a
configured issuer; everything else about it is then verified against that issuer's
configuration alone: the key (its JWKS URL or PEM), the algorithms, the audience. Nothing
the token says chooses a key location or an algorithm outside that list, and ``jku``,
``x5u``, ``jwk`` or ``x5c`` headers are refused outright. A ``jti`` is accepted once
(``used_service_tokens``, shared by every process through the database). Every refusal is
the same 401 ``invalid_credentials``; the reason is logged, never told.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from starlette.requests import HTTPConnection

from tillpay.accounts.permissions import Scope
from tillpay.accounts.principal import CredentialKind, Principal
from tillpay.credentials.jwks import MAX_KID_LENGTH, JwkDict, JwksCache, new_client
from tillpay.credentials.models import UsedServiceToken
from tillpay.kit.db import Database, utcnow
from tillpay.kit.errors import Unauthorized
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.client_cert import client_certificate_subject
from tillpay.kit.logging import get_logger
from tillpay.settings_groups.service_tokens import ServiceTokenIssuer

log = get_logger("tillpay.authz")

MAX_TOKEN_LENGTH = 8192
MAX_LIFETIME_SECONDS = 300
LEEWAY_SECONDS = 30
MAX_SUB_LENGTH = 200
MAX_JTI_LENGTH = 200
MAX_SCOPE_LENGTH = 1000
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti", "sub", "scope")
#: Headers that would name a key or where to fetch one: the token never chooses its key.
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SCOPES = {s.value: s for s in Scope}


class Refused(Exception):
    """A service token not accepted; ``reason`` is logged only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _segment(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        # RecursionError: deeply nested JSON, which fits in a token's few kilobytes.
        return None
    return value if isinstance(value, dict) else None


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims of a strict compact JWS, *unverified*: only to tell which issuer
    to verify against. None when ``token`` is no such thing."""
    if len(token) > MAX_TOKEN_LENGTH or not _COMPACT.fullmatch(token):
        return None
    head, body, _signature = token.split(".")
    header, claims = _segment(head), _segment(body)
    if header is None or claims is None:
        return None
    return header, claims


def replay_key(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_claims(claims: dict[str, Any]) -> frozenset[Scope]:
    """What PyJWT does not check: numeric times, the lifetime bound, the shape of
    ``sub``/``jti`` and the scopes (each must be known: a typo is refused, not dropped)."""
    exp, iat = claims["exp"], claims["iat"]
    if not (_number(exp) and _number(iat)):
        raise Refused("time_claims_not_numbers")
    if exp <= iat:
        raise Refused("lifetime_not_positive")
    if exp - iat > MAX_LIFETIME_SECONDS:
        raise Refused("lifetime_too_long")
    sub, jti = claims["sub"], claims["jti"]
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH or not sub.isprintable():
        raise Refused("bad_sub")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise Refused("bad_jti")
    scope = claims["scope"]
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_LENGTH:
        raise Refused("bad_scope")
    names = scope.split()
    if not names:
        raise Refused("no_scope")
    unknown = [n for n in names if n not in _SCOPES]
    if unknown:
        raise Refused("unknown_scope")
    return frozenset(_SCOPES[n] for n in names)


@dataclass
class _Issuer:
    config: ServiceTokenIssuer
    jwks: JwksCache | None
    public_key: Any = None
    # PyJWK objects built from JWKS entries, by (kid, alg): built once per fetched entry.
    built: dict[tuple[str, str], tuple[JwkDict, jwt.PyJWK]] = field(default_factory=dict)


class ServiceTokenVerifier:
    """Verifies service tokens against the configured issuers; one per application (it
    holds the JWKS caches and their HTTP client: :meth:`aclose` on shutdown)."""

    def __init__(
        self,
        issuers: list[ServiceTokenIssuer],
        database: Database,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._database = database
        needs_client = any(e.jwks_url is not None for e in issuers)
        self._client = new_client(transport) if needs_client else None
        self._issuers: dict[str, _Issuer] = {}
        for entry in issuers:
            if entry.jwks_url is not None and self._client is not None:
                cache = JwksCache(entry.issuer, entry.jwks_url, self._client)
                self._issuers[entry.issuer] = _Issuer(entry, cache)
            else:
                assert entry.public_key_pem is not None
                key = load_pem_public_key(entry.public_key_pem.encode())
                self._issuers[entry.issuer] = _Issuer(entry, None, key)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def authenticate(self, token: str, *, request: HTTPConnection) -> Principal | None:
        """The principal a service token stands for; None when ``token`` names no
        configured issuer (it is then no service token); 401 for any problem."""
        peeked = peek(token)
        if peeked is None:
            return None
        header, unverified = peeked
        issuer = unverified.get("iss")
        entry = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if entry is None:
            return None
        try:
            claims = await self._verify(entry, token, header)
            scopes = check_claims(claims)
            self._check_certificate(entry, request)
            await self._remember(entry.config.issuer, claims)
        except Refused as exc:
            kid = header.get("kid")
            log.info(
                "authz.service_token_rejected",
                reason=exc.reason,
                issuer=entry.config.issuer,
                kid=kid[:64] if isinstance(kid, str) else None,
            )
            raise Unauthorized(
                "The service token is invalid, expired or not accepted here.",
                code="invalid_credentials",
            ) from None
        config = entry.config
        return Principal(
            user_id=f"service:{claims['sub']}",
            role=None,
            session_id="",
            mfa=False,
            auth_time=datetime.fromtimestamp(claims["iat"], UTC),
            email_verified=False,
            totp_enabled=False,
            ip=client_ip(request.scope),
            kind=CredentialKind.SERVICE_TOKEN,
            scopes=scopes,
            merchant=config.merchant,
            # The audit trail keeps ``credential`` whole (its actor id is cut to 40
            # characters): the shop user named by ``sub`` is recorded here.
            credential=f"service:{config.issuer}#{claims['sub']}",
        )

    async def _verify(self, entry: _Issuer, token: str, header: dict[str, Any]) -> dict[str, Any]:
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise Refused(f"header_{name}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in entry.config.algorithms:
            raise Refused("algorithm_not_allowed")
        key = entry.public_key if entry.jwks is None else await self._jwk(entry, header, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=entry.config.audience,
                issuer=entry.config.issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Refused(f"missing_{exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise Refused(type(exc).__name__) from None
        except (TypeError, ValueError):
            raise Refused("unusable_key") from None
        return claims

    async def _jwk(self, entry: _Issuer, header: dict[str, Any], alg: str) -> jwt.PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise Refused("no_kid")
        assert entry.jwks is not None
        jwk = await entry.jwks.key(kid)
        if jwk is None:
            raise Refused("unknown_kid")
        if jwk.get("alg", alg) != alg:
            raise Refused("algorithm_not_the_keys")
        built = entry.built.get((kid, alg))
        if built is not None and built[0] is jwk:
            return built[1]
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise Refused("unusable_key") from None
        entry.built[(kid, alg)] = (jwk, key)
        return key

    def _check_certificate(self, entry: _Issuer, request: HTTPConnection) -> None:
        expected = entry.config.client_cert_subject
        if expected is None:
            return
        presented = client_certificate_subject(request)
        if presented is None:
            raise Refused("client_certificate_missing")
        if presented != expected:
            raise Refused("client_certificate_mismatch")

    async def _remember(self, issuer: str, claims: dict[str, Any]) -> None:
        """Record the ``jti`` (until the token could no longer be accepted anyway); a
        unique violation is a replay, whichever process saw it first."""
        key = replay_key(issuer, claims["jti"])
        expires_at = datetime.fromtimestamp(claims["exp"] + LEEWAY_SECONDS, UTC)
        if await self._insert(key, expires_at):
            return
        # A row past its time that the purge has not reached yet no longer counts.
        async with self._database.transaction() as session:
            result = await session.execute(
                delete(UsedServiceToken).where(
                    UsedServiceToken.key == key, UsedServiceToken.expires_at <= utcnow()
                )
            )
        if not getattr(result, "rowcount", 0) or not await self._insert(key, expires_at):
            raise Refused("replayed")

    async def _insert(self, key: str, expires_at: datetime) -> bool:
        try:
            async with self._database.transaction() as session:
                await session.execute(
                    insert(UsedServiceToken).values(key=key, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True


async def purge_used(database: Database) -> int:
    """Forget the ``jti`` values whose tokens have expired; how many."""
    async with database.transaction() as session:
        result = await session.execute(
            delete(UsedServiceToken).where(UsedServiceToken.expires_at <= utcnow())
        )
    return int(getattr(result, "rowcount", 0) or 0)
