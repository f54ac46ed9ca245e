"""Ed25519 signing keys and typed JWT issue/verify (RFC 8725 / draft-ietf-oauth-rfc8725bis).

Every token is signed with EdDSA over Ed25519; the accepted algorithm is hard-coded and
never taken from the token. Each token kind has its own ``typ`` header and audience, so
an MFA-pending token can never pass as an access token (explicit typing, RFC 8725 §3.11).

Verification treats the whole token as attacker input: strict compact form and a length
cap before any parsing, an allow-list of header parameters (no ``jwk``/``jku``/``x5u``/
``x5c``/``crit``, so nothing is ever fetched or trusted from the token), and a ``kid``
that is only ever used as a dictionary key. Every failure raises :class:`InvalidToken`.

This module holds no state and touches no database: callers persist keys (private keys
encrypted with :func:`encrypt_private_key`) and build a :class:`KeyRing` from them.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import OKPAlgorithm
from jwt.utils import base64url_decode

__all__ = [
    "ACCESS",
    "ALGORITHM",
    "MAX_KID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MFA_PENDING",
    "REGISTERED_CLAIMS",
    "InvalidToken",
    "IssuedToken",
    "KeyDecryptionError",
    "KeyRing",
    "SigningKey",
    "TokenKind",
    "TokenService",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_signing_key",
    "load_public_key",
    "public_jwk",
    "serialize_public_key",
]

ALGORITHM: Final = "EdDSA"
_ALGORITHMS: Final = [ALGORITHM]

MAX_TOKEN_LENGTH: Final = 4096
MAX_KID_LENGTH: Final = 64

_COMPACT_JWS_RE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_KID_RE: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_KID_LENGTH}}}")
_ALLOWED_HEADER_KEYS: Final = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS: Final = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]

REGISTERED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid"})
"""Claims set by :meth:`TokenService.issue`; ``extra`` may not contain them."""

_ENCRYPTION_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_MIN_SECRET_BYTES: Final = 32
_HKDF_INFO: Final = b"tillpay/jwt-signing-key/aes-256-gcm/v1"
_AAD_PREFIX: Final = b"tillpay/jwt-signing-key/kid:"


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key pair identified by ``kid``; ``private_key`` is None for verify-only keys."""

    kid: str
    private_key: Ed25519PrivateKey | None = field(repr=False)
    public_key: Ed25519PublicKey
    created_at: datetime

    def __post_init__(self) -> None:
        if not _KID_RE.fullmatch(self.kid):
            raise ValueError("kid must be 1-64 characters of [A-Za-z0-9_-]")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.private_key is not None and serialize_public_key(
            self.private_key.public_key()
        ) != serialize_public_key(self.public_key):
            raise ValueError("private_key does not match public_key")


def generate_signing_key(*, now: datetime | None = None) -> SigningKey:
    """Create a fresh Ed25519 key pair with a random ``kid`` (``key_`` + 128 random bits)."""
    private_key = Ed25519PrivateKey.generate()
    return SigningKey(
        kid="key_" + secrets.token_urlsafe(16),
        private_key=private_key,
        public_key=private_key.public_key(),
        created_at=now or _utc_now(),
    )


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public half of ``key`` as a JWK (RFC 8037); never contains ``d``."""
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key.public_key, as_dict=True)
    return {**jwk, "kid": key.kid, "alg": ALGORITHM, "use": "sig"}


def serialize_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32-byte encoding of ``public_key``."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key from its raw 32 bytes or from PEM (SubjectPublicKeyInfo)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("PEM does not hold an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(data)


class KeyDecryptionError(Exception):
    """An encrypted private key could not be decrypted (wrong secret, kid or tampered blob)."""


def _wrapping_key(secret: bytes) -> AESGCM:
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"secret must be at least {_MIN_SECRET_BYTES} bytes")
    # The server secret may be used for other purposes too; HKDF with a purpose-specific
    # info string derives an independent key for this one.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)
    return AESGCM(derived)


def _associated_data(kid: str) -> bytes:
    # Binding the kid means a blob copied onto another key row fails to decrypt.
    return _ENCRYPTION_VERSION + _AAD_PREFIX + kid.encode()


def encrypt_private_key(private_key: Ed25519PrivateKey, kid: str, secret: bytes) -> bytes:
    """Encrypt ``private_key`` for storage: ``version || nonce || AES-256-GCM(raw key)``.

    The AES key is derived from ``secret`` (>= 32 bytes) with HKDF-SHA256; ``kid`` is
    authenticated as associated data.
    """
    raw = private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = _wrapping_key(secret).encrypt(nonce, raw, _associated_data(kid))
    return _ENCRYPTION_VERSION + nonce + ciphertext


def decrypt_private_key(blob: bytes, kid: str, secret: bytes) -> Ed25519PrivateKey:
    """Reverse :func:`encrypt_private_key`; raises :class:`KeyDecryptionError` on any mismatch."""
    if not blob.startswith(_ENCRYPTION_VERSION):
        raise KeyDecryptionError("unknown key blob version")
    nonce = blob[1 : 1 + _NONCE_BYTES]
    ciphertext = blob[1 + _NONCE_BYTES :]
    if len(nonce) != _NONCE_BYTES:
        raise KeyDecryptionError("key blob too short")
    try:
        raw = _wrapping_key(secret).decrypt(nonce, ciphertext, _associated_data(kid))
    except InvalidTag:
        raise KeyDecryptionError("key blob authentication failed") from None
    return Ed25519PrivateKey.from_private_bytes(raw)


class KeyRing:
    """The keys tokens are verified with; the newest key holding a private key signs."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ValueError(f"duplicate kid {key.kid!r}")
            self._keys[key.kid] = key
        signers = [k for k in self._keys.values() if k.private_key is not None]
        self._signing_key = max(signers, key=lambda k: k.created_at) if signers else None

    @property
    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with; raises LookupError if the ring is verify-only."""
        if self._signing_key is None:
            raise LookupError("key ring has no private key to sign with")
        return self._signing_key

    def get(self, kid: object) -> SigningKey | None:
        """The key with exactly this ``kid`` (untrusted input: only a bounded dict look-up)."""
        if not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH:
            return None
        return self._keys.get(kid)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """All verification keys as a JWK Set, newest first."""
        keys = sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)
        return {"keys": [public_jwk(k) for k in keys]}

    def __len__(self) -> int:
        return len(self._keys)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class TokenKind:
    """A token type: its ``typ`` header, audience suffix and default lifetime."""

    name: str
    typ: str
    audience_suffix: str
    default_ttl: timedelta

    def audience(self, base_audience: str) -> str:
        """The ``aud`` value of this kind for the configured API audience."""
        return base_audience + self.audience_suffix


ACCESS: Final = TokenKind("access", "at+jwt", "", timedelta(minutes=15))
MFA_PENDING: Final = TokenKind("mfa_pending", "mfa+jwt", ":mfa", timedelta(minutes=5))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token with its ``jti`` and expiry."""

    token: str = field(repr=False)
    jti: str
    expires_at: datetime


class InvalidToken(Exception):
    """The token is unacceptable. ``reason`` is for logs only, never for clients."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidToken("duplicate header parameter")
        result[key] = value
    return result


def _parse_header(segment: str) -> dict[str, Any]:
    try:
        raw = base64url_decode(segment)
        header = json.loads(raw, object_pairs_hook=_reject_duplicate_keys)
    except InvalidToken:
        raise
    except (ValueError, RecursionError):
        raise InvalidToken("header is not valid base64url JSON") from None
    if not isinstance(header, dict):
        raise InvalidToken("header is not a JSON object")
    return header


def _numeric_date(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int subclass; we only ever issue plain integers.
    if type(value) is not int:
        raise InvalidToken(f"{name} is not an integer")
    return value


class VerifiedTokens:
    """Tokens whose signature and claims already verified, so a client sending the same
    token on every request costs one Ed25519 verification, not one per request.

    Only the time-independent checks are remembered: an entry is used only while the key
    that verified it is still in the ring, and the time claims are checked on every use.
    Bounded (the oldest entry goes first); only valid tokens ever enter it.
    """

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._entries: dict[tuple[str, str], tuple[dict[str, Any], SigningKey]] = {}

    def get(self, token: str, kind: TokenKind, keyring: KeyRing) -> dict[str, Any] | None:
        entry = self._entries.get((token, kind.typ))
        if entry is None:
            return None
        claims, key = entry
        if keyring.get(key.kid) is not key:
            del self._entries[(token, kind.typ)]
            return None
        return dict(claims)

    def put(self, token: str, kind: TokenKind, claims: dict[str, Any], key: SigningKey) -> None:
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[(token, kind.typ)] = (dict(claims), key)


class TokenService:
    """Issues and verifies typed, EdDSA-signed JWTs for one issuer and API audience."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 0,
        clock: Callable[[], datetime] = _utc_now,
        verified: VerifiedTokens | None = None,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self._clock = clock
        self._verified = verified

    def issue(
        self,
        kind: TokenKind,
        *,
        subject: str,
        session_id: str | None = None,
        ttl: timedelta | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Sign a ``kind`` token for ``subject`` lasting ``ttl`` (default: the kind's).

        ``extra`` adds private claims (e.g. ``role``); it may not override registered ones.
        """
        extra = extra or {}
        clashing = REGISTERED_CLAIMS.intersection(extra)
        if clashing:
            raise ValueError(f"extra claims may not override {sorted(clashing)}")
        if not subject:
            raise ValueError("subject is required")
        lifetime = kind.default_ttl if ttl is None else ttl
        if lifetime <= timedelta(0):
            raise ValueError("ttl must be positive")

        key = self.keyring.signing_key
        if key.private_key is None:  # pragma: no cover - KeyRing only picks private keys
            raise LookupError("signing key has no private key")
        now = int(self._clock().timestamp())
        expires = now + int(lifetime.total_seconds())
        jti = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            **extra,
            "iss": self.issuer,
            "aud": kind.audience(self.audience),
            "sub": subject,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": expires,
        }
        if session_id is not None:
            claims["sid"] = session_id
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"typ": kind.typ, "kid": key.kid},
        )
        return IssuedToken(token=token, jti=jti, expires_at=datetime.fromtimestamp(expires, tz=UTC))

    def verify(self, token: object, kind: TokenKind) -> dict[str, Any]:
        """Return the claims of a valid ``kind`` token; raise :class:`InvalidToken` otherwise."""
        if not isinstance(token, str):
            raise InvalidToken("token is not a string")
        # Length first so no later step (regex, base64, JSON) sees unbounded input.
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        if self._verified is not None:
            remembered = self._verified.get(token, kind, self.keyring)
            if remembered is not None:
                self._check_times(remembered)
                return remembered
        if not _COMPACT_JWS_RE.fullmatch(token):
            raise InvalidToken("not compact JWS serialization")

        header = _parse_header(token.split(".", 1)[0])
        if not header.keys() <= _ALLOWED_HEADER_KEYS:
            raise InvalidToken("unexpected header parameter")
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("algorithm not allowed")
        if header.get("typ") != kind.typ:
            raise InvalidToken("wrong token type")
        signing_key = self.keyring.get(header.get("kid"))
        if signing_key is None:
            raise InvalidToken("unknown kid")

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.public_key,
                algorithms=_ALGORITHMS,
                audience=kind.audience(self.audience),
                issuer=self.issuer,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "strict_aud": True,
                    # PyJWT reads the wall clock; time claims are checked below against
                    # the injected (trusted) clock instead.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"rejected by PyJWT: {type(exc).__name__}") from None

        self._check_times(claims)
        if not claims["sub"]:
            raise InvalidToken("empty sub")
        if "sid" in claims and not isinstance(claims["sid"], str):
            raise InvalidToken("sid is not a string")
        if self._verified is not None:
            self._verified.put(token, kind, claims, signing_key)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock().timestamp()
        leeway = self.leeway_seconds
        exp = _numeric_date(claims, "exp")
        nbf = _numeric_date(claims, "nbf")
        iat = _numeric_date(claims, "iat")
        if exp <= now - leeway:
            raise InvalidToken("expired")
        if nbf > now + leeway:
            raise InvalidToken("not yet valid (nbf)")
        if iat > now + leeway:
            raise InvalidToken("issued in the future (iat)")
