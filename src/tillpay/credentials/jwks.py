"""A shop backend's signing keys, fetched from its configured JWKS URL and cached.

The URL comes from the configuration only, never from a token (``jku``/``x5u`` headers
are refused before a key is looked up). Fetches are bounded (timeouts, no redirects, a
size cap) and rare: the keys are kept for :data:`CACHE_SECONDS`; a ``kid`` not among them
triggers a refresh, but at most one attempt per :data:`MIN_REFRESH_SECONDS` per issuer
(any number of tokens with made-up ``kid`` values cost the shop one request per interval),
and concurrent refreshes share one fetch. When the shop's JWKS cannot be reached, the keys
already held stay usable for :data:`STALE_GRACE_SECONDS` past their time.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tillpay.kit.logging import get_logger
from tillpay.kit.outbound import tls_context

log = get_logger("tillpay.authz")

CACHE_SECONDS = 600.0
MIN_REFRESH_SECONDS = 30.0
STALE_GRACE_SECONDS = 3600.0
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 50
MAX_KID_LENGTH = 200
FETCH_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
#: Key types that sign asymmetrically; ``oct`` (shared secrets) is never used.
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

JwkDict = dict[str, Any]


def _now() -> float:
    """Monotonic seconds (a function of its own, so tests can move the clock)."""
    return time.monotonic()


class JwksUnavailable(Exception):
    """The JWKS could not be fetched or read; ``reason`` says why (logged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client every issuer's JWKS is fetched with: TLS verified, no redirects (a
    redirect would let the shop's host send tillpay anywhere), short timeouts."""
    return httpx.AsyncClient(
        timeout=FETCH_TIMEOUT,
        follow_redirects=False,
        verify=tls_context(),
        transport=transport,
        headers={"Accept": "application/json"},
    )


def parse_jwks(body: bytes) -> dict[str, JwkDict]:
    """The usable signing keys of a JWKS document, by ``kid``. Keys without a ``kid``,
    for another use than signing, symmetric, or listed twice under one ``kid`` are left
    out (a duplicate ``kid`` would make the choice of key ambiguous)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("not_json") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailable("no_keys_list")
    found: dict[str, JwkDict] = {}
    duplicates: set[str] = set()
    for jwk in keys[:MAX_KEYS]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            continue
        if jwk.get("kty") not in _KEY_TYPES or jwk.get("use", "sig") != "sig":
            continue
        if kid in found:
            duplicates.add(kid)
        found[kid] = jwk
    for kid in duplicates:
        del found[kid]
    return found


class JwksCache:
    """One issuer's keys (see the module's docstring for the policy)."""

    def __init__(self, issuer: str, url: str, client: httpx.AsyncClient) -> None:
        self.issuer = issuer
        self.url = url
        self._client = client
        self._keys: dict[str, JwkDict] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> JwkDict | None:
        """The key ``kid`` names, refreshing the set when it is old or lacks ``kid``
        (within the rate limit); None when the issuer has no such key."""
        if self._fetched_at is None or _now() - self._fetched_at >= CACHE_SECONDS:
            await self.refresh("expired" if self._fetched_at else "first_use")
        jwk = self._current(kid)
        if jwk is None:
            await self.refresh("unknown_kid")
            jwk = self._current(kid)
        return jwk

    def _current(self, kid: str) -> JwkDict | None:
        if self._fetched_at is None:
            return None
        if _now() - self._fetched_at >= CACHE_SECONDS + STALE_GRACE_SECONDS:
            return None
        return self._keys.get(kid)

    async def refresh(self, reason: str) -> None:
        """Fetch the set again, unless an attempt was made within the rate limit; callers
        waiting while another fetches take that fetch's result."""
        seen = self._attempted_at
        async with self._lock:
            if self._attempted_at != seen:
                return  # another caller refreshed (or tried) meanwhile
            now = _now()
            if self._attempted_at is not None and now - self._attempted_at < MIN_REFRESH_SECONDS:
                log.debug("service_token.jwks_refresh_limited", issuer=self.issuer, reason=reason)
                return
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except JwksUnavailable as exc:
                log.warning(
                    "service_token.jwks_unavailable",
                    issuer=self.issuer,
                    reason=exc.reason,
                    trigger=reason,
                )
                return
            self._keys = keys
            self._fetched_at = _now()
            log.info(
                "service_token.jwks_fetched", issuer=self.issuer, keys=len(keys), trigger=reason
            )

    async def _fetch(self) -> dict[str, JwkDict]:
        try:
            async with self._client.stream("GET", self.url) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"http_{response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                    raise JwksUnavailable("too_large")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable("too_large")
        except httpx.TimeoutException:
            raise JwksUnavailable("timeout") from None
        except httpx.HTTPError as exc:
            raise JwksUnavailable(f"transport:{type(exc).__name__}") from None
        return parse_jwks(bytes(body))
