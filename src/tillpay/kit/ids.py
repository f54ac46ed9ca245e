"""Random, prefixed public identifiers such as ``ord_01J9Z3K4T8X2V6QW0M5N7RBCDE``.

The 26-character body is a ULID-style Crockford base32 string: 48 bits of Unix time in
milliseconds followed by 80 bits from ``secrets``. The time prefix makes ids sort by
creation time (usable as pagination cursors); the random part makes them unguessable.

Unlike monotonic ULID generators, every id carries 80 fresh random bits, even within
one millisecond: a monotonic generator makes the next id of the same millisecond the
previous one plus one, i.e. guessable. Ids of the same millisecond therefore sort in
random order among themselves.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime
from functools import cache
from typing import Final

from pydantic import StringConstraints

__all__ = [
    "CROCKFORD_ALPHABET",
    "ID_BODY_LENGTH",
    "ID_COLUMN_LENGTH",
    "MAX_ID_LENGTH",
    "derived_id",
    "id_column_length",
    "id_constraints",
    "id_created_at",
    "id_pattern",
    "is_valid_id",
    "lowest_id",
    "new_id",
]

CROCKFORD_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32: digits and upper-case letters without I, L, O and U."""

ID_BODY_LENGTH: Final = 26
"""Characters after ``prefix_``: 128 bits in base32."""

_PREFIX_RE: Final = re.compile(r"[a-z]{2,8}")
_MAX_PREFIX_LENGTH: Final = 8
MAX_ID_LENGTH: Final = _MAX_PREFIX_LENGTH + 1 + ID_BODY_LENGTH
"""Longest possible id (35)."""

ID_COLUMN_LENGTH: Final = 40
"""Suggested ``String(ID_COLUMN_LENGTH)`` size for any id column: room for every prefix."""

_TIME_BITS: Final = 48
_RANDOM_BITS: Final = 80
# 26 base32 characters hold 130 bits; a 128-bit value leaves the first character <= 7.
_BODY_PATTERN: Final = "[0-7][0-9A-HJKMNP-TV-Z]{25}"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"id prefix must be 2-8 lower-case ASCII letters, got {prefix!r}")
    return prefix


def _encode(value: int) -> str:
    chars = []
    for _ in range(ID_BODY_LENGTH):
        value, index = divmod(value, 32)
        chars.append(CROCKFORD_ALPHABET[index])
    return "".join(reversed(chars))


def new_id(prefix: str, *, timestamp_ms: int | None = None) -> str:
    """New id ``f"{prefix}_{26 chars}"``; ``timestamp_ms`` overrides the clock (tests, backfills)."""
    _check_prefix(prefix)
    ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    if not 0 <= ms < 1 << _TIME_BITS:
        raise ValueError("timestamp_ms must fit in 48 bits")
    return f"{prefix}_{_encode(ms << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS))}"


def lowest_id(prefix: str, moment: datetime) -> str:
    """The smallest id with ``prefix`` created at or after ``moment``: ids sort by creation
    time, so ``id >= lowest_id(p, t)`` selects rows created from ``t`` on (a date filter
    that an index on the id serves)."""
    _check_prefix(prefix)
    ms = min(max(int(moment.timestamp() * 1000), 0), (1 << _TIME_BITS) - 1)
    return f"{prefix}_{_encode(ms << _RANDOM_BITS)}"


def derived_id(prefix: str, key: str, *, timestamp_ms: int) -> str:
    """The id that ``key`` always gives (its 80 low bits are SHA-256 of ``key``, not
    random): for a row that must exist once, e.g. one event per day, where a second
    writer's insert of the same id then conflicts. Guessable by design: never use it for an
    id that must be unguessable."""
    _check_prefix(prefix)
    if not 0 <= timestamp_ms < 1 << _TIME_BITS:
        raise ValueError("timestamp_ms must fit in 48 bits")
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")
    return f"{prefix}_{_encode(timestamp_ms << _RANDOM_BITS | digest)}"


def id_pattern(prefix: str) -> str:
    """Anchored regular expression matching exactly the ids with ``prefix``."""
    return f"^{_check_prefix(prefix)}_{_BODY_PATTERN}$"


@cache
def _compiled(prefix: str) -> re.Pattern[str]:
    return re.compile(id_pattern(prefix))


def id_column_length(prefix: str) -> int:
    """Exact length of every id with ``prefix``."""
    return len(_check_prefix(prefix)) + 1 + ID_BODY_LENGTH


def is_valid_id(value: object, prefix: str) -> bool:
    """True if ``value`` is a well-formed id with ``prefix`` (canonical upper-case body).

    Raises ValueError for an invalid ``prefix``: that is a programming error, not bad input.
    """
    length = id_column_length(prefix)
    return (
        isinstance(value, str)
        and len(value) == length
        and _compiled(prefix).fullmatch(value) is not None
    )


def id_constraints(prefix: str) -> StringConstraints:
    """Pydantic metadata validating an id with ``prefix``, so a malformed id is a 422.

    Works for model fields and FastAPI path parameters alike::

        OrderId = Annotated[str, id_constraints("ord")]

        @router.get("/orders/{order_id}")
        async def get_order(order_id: OrderId) -> ...
    """
    length = id_column_length(prefix)
    return StringConstraints(
        strict=True, min_length=length, max_length=length, pattern=id_pattern(prefix)
    )


def id_created_at(value: str) -> datetime | None:
    """The creation time (millisecond precision, UTC) carried in an id's first 48 bits;
    ``None`` for a string that is not a tillpay id."""
    _, _, body = value.rpartition("_")
    if len(body) != ID_BODY_LENGTH or not re.fullmatch(_BODY_PATTERN, body):
        return None
    ms = 0
    for char in body[:10]:  # 50 bits: the two always-zero top bits, then the 48 time bits
        ms = ms * 32 + CROCKFORD_ALPHABET.index(char)
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, ValueError):  # beyond year 9999
        return None
