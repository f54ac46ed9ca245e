"""Small cryptographic helpers: sealing secrets at rest, token hashing, keyed digests.

Sealing uses AES-256-GCM with a per-purpose key derived from the server secret (HKDF-
SHA256), a random 96-bit nonce, and associated data that binds a ciphertext to the row
it belongs to, so a sealed value cannot be copied to another row.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value could not be opened (wrong key, wrong binding or tampering)."""


def derive_key(secret: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose, derived from the server secret."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"tillpay/v1", info=purpose.encode()
    ).derive(secret)


def seal(plaintext: bytes, *, secret: bytes, purpose: str, bound_to: str) -> bytes:
    """Encrypt ``plaintext`` for ``purpose``, bound to ``bound_to`` (e.g. a row id)."""
    nonce = os.urandom(_NONCE_BYTES)
    aead = AESGCM(derive_key(secret, purpose))
    return _VERSION + nonce + aead.encrypt(nonce, plaintext, bound_to.encode())


def unseal(blob: bytes, *, secret: bytes, purpose: str, bound_to: str) -> bytes:
    """Decrypt a value made by :func:`seal`; raises :class:`SealError` on any mismatch."""
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
        raise SealError("unsupported sealed value")
    nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return AESGCM(derive_key(secret, purpose)).decrypt(nonce, ciphertext, bound_to.encode())
    except InvalidTag:
        raise SealError("sealed value failed authentication") from None


def new_opaque_token(nbytes: int = 32) -> str:
    """A URL-safe random token (default 256 bits) for refresh, reset and verify links."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """SHA-256 hex digest used to store high-entropy tokens (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_digest(value: str, *, secret: bytes, purpose: str) -> str:
    """HMAC-SHA256 of ``value`` with a purpose-derived key (for low-entropy values)."""
    return hmac.new(derive_key(secret, purpose), value.encode(), hashlib.sha256).hexdigest()
