"""Timestamped HMAC signatures in Stripe's scheme: header ``t=<unix>,v1=<hex>`` over
``"{t}.{raw body}"`` with HMAC-SHA256, several ``v1`` values accepted (secret rotation),
compared in constant time, with a replay tolerance that cannot be switched off."""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_TOLERANCE = 300
MAX_HEADER_LENGTH = 2048


def sign(body: bytes, secret: bytes, *, timestamp: int | None = None) -> str:
    """The signature header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify(
    body: bytes,
    header: str | None,
    secrets: list[bytes],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: int | None = None,
) -> bool:
    """True when some ``v1`` matches some secret and ``t`` is within ``tolerance``."""
    if not header or len(header) > MAX_HEADER_LENGTH or tolerance <= 0 or not secrets:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # isascii: str.isdigit also accepts digits that int() refuses (superscripts)
        # or reads (Arabic-Indic): only the canonical form is a timestamp.
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    payload = f"{timestamp}.".encode() + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        for candidate in candidates:
            # No early exit: every comparison runs, each in constant time.
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched
