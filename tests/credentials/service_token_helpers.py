"""Test-side service tokens: signing keys, a shop's JWKS served on loopback, tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.harness.servers import serving

ISSUER = "https://shop.example"
AUDIENCE = "tillpay"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key())
        )
        return {**data, "kid": self.kid, "use": "sig", "alg": "ES256"}

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for :data:`ISSUER`; a change to None drops that claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "shop-user-42",
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_hex(16),
        "scope": "webhooks:manage",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def mint(key: SigningKey, headers: dict[str, Any] | None = None, **changes: Any) -> str:
    """A token signed by ``key``; a header set to None in ``headers`` is left out."""
    fields = {"kid": key.kid, **(headers or {})}
    return jwt.encode(
        claims(**changes),
        key.private,
        algorithm="ES256",
        headers={k: v for k, v in fields.items() if v is not None},
    )


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], **changes: Any) -> str:
    """A token with an empty signature (``alg: none`` and friends)."""
    return f"{_b64(header)}.{_b64(claims(**changes))}."


def hmac_signed(secret: bytes, kid: str, **changes: Any) -> str:
    """An HS256 token keyed with ``secret`` (e.g. the issuer's public key as HMAC key)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims(**changes))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Shop:
    """A shop backend's key server on loopback: ``keys`` is what ``/jwks.json`` serves
    (change it to rotate); ``hits`` every path requested, in order."""

    base: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    status: int = 200  # what /jwks.json answers with (503: the shop is down)
    redirect_to: str | None = None  # /jwks.json answers 302 to this path

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/jwks.json"

    def issuer(self, **changes: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": self.jwks_url,
            "algorithms": ["ES256"],
            "merchant": "default",  # the house: every scope counts
        }
        entry.update(changes)
        return {k: v for k, v in entry.items() if v is not None}

    def fetches(self) -> int:
        return self.hits.count("/jwks.json")


@asynccontextmanager
async def shop_serving(*keys: SigningKey) -> AsyncIterator[Shop]:
    shop = Shop(keys=[k.jwk() for k in keys])

    async def anything(request: Request) -> JSONResponse:
        shop.hits.append(request.url.path)
        if request.url.path == "/jwks.json" and shop.redirect_to is not None:
            return JSONResponse({}, status_code=302, headers={"Location": shop.redirect_to})
        if request.url.path == "/jwks.json":
            return JSONResponse({"keys": shop.keys}, status_code=shop.status)
        # Any other path: an attacker's key set; tillpay must never ask for it.
        return JSONResponse({"keys": []})

    app = Starlette(routes=[Route("/{path:path}", anything)])
    async with serving(app) as base:
        shop.base = base
        yield shop
