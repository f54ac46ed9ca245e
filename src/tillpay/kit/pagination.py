"""Opaque cursors for keyset pagination.

A cursor encodes the last seen sort key. It is opaque to clients (base64url, versioned)
but not secret: a forged cursor only moves the starting point of a query whose filters
and ownership checks still apply. Malformed cursors are a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Protocol

from tillpay.kit.errors import BadRequest

_PREFIX = "v1:"
_KEY = re.compile(r"^[A-Za-z0-9_:.\-]{1,120}$")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise BadRequest("The cursor is invalid.", code="invalid_cursor") from None
    if not raw.startswith(_PREFIX) or not _KEY.match(raw[len(_PREFIX) :]):
        raise BadRequest("The cursor is invalid.", code="invalid_cursor")
    return raw[len(_PREFIX) :]


class Keyed(Protocol):
    @property
    def id(self) -> str: ...


def next_cursor(rows: Sequence[Keyed], limit: int) -> str | None:
    """The cursor after a page read as ``limit + 1`` rows (the extra one says more follow)."""
    return encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
