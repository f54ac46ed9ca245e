"""Signed claims in a compact, versioned text: ``<version>.<base64url JSON>.<base64url
HMAC-SHA256>`` — the console and shop cookies and the realtime socket tickets.

The JSON is canonical (sorted keys, no spaces); the MAC covers ``<version>.<payload>``
under a key derived per purpose; verification is constant-time and checks the version,
a length cap and the type of every required claim. Not encrypted: claims are readable by
whoever holds the value, so they carry ids, never secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

MAX_LENGTH: Final = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, version: str, claims: Mapping[str, Any]) -> str:
    """The signed text of ``claims``."""
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{version}.{payload}"
    mac = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_b64(mac)}"


def unseal(
    key: bytes, version: str, value: str, required: Mapping[str, type]
) -> dict[str, Any] | None:
    """The claims of ``value`` when its version, signature and required claims' types
    hold; else None (never an exception: the value comes from a client)."""
    sent_version, _, rest = value.partition(".")
    payload, _, mac = rest.partition(".")
    if sent_version != version or not payload or not mac or len(value) > MAX_LENGTH:
        return None
    expected = hmac.new(key, f"{version}.{payload}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        claims = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(claims, dict) or any(
        not isinstance(claims.get(name), kind) for name, kind in required.items()
    ):
        return None
    return claims
