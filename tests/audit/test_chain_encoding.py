"""Known answers for the audit chain's canonical encoding (audit/chain.py).

The expected bytes are written out by hand from the rules; the digest is ``sha256sum``
of those bytes. A change here breaks every stored chain: it needs a new encoding version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tillpay.audit.chain import HASHED_FIELDS, canonical_bytes, entry_hash, format_time

ENTRY = {
    "id": "aud_01JEXAMPLE",
    "seq": 7,
    "prev_hash": "ab" * 32,
    # 10:05:01 at +01:00 is 09:05:01 UTC
    "occurred_at": datetime(2026, 12, 3, 10, 5, 1, tzinfo=timezone(timedelta(hours=1))),
    "action": "auth.login",
    "outcome": "failure",
    "actor_id": None,
    "actor_role": None,
    "target_type": "user",
    "target_id": "usr_01JX",
    "ip": "203.0.113.9",
    "request_id": "req-1",
    "details": {
        "reason": "bad password",
        "attempt": 2,
        "note": "café ✓",
        "nested": {"b": [1, None, True], "a": 1.5},
    },
}
EXPECTED = (
    b'{"action":"auth.login","actor_id":null,"actor_role":null,'
    b'"details":{"attempt":2,"nested":{"a":1.5,"b":[1,null,true]},'
    b'"note":"caf\\u00e9 \\u2713","reason":"bad password"},'
    b'"id":"aud_01JEXAMPLE","ip":"203.0.113.9","occurred_at":"2026-12-03T09:05:01.000000Z",'
    b'"outcome":"failure","prev_hash":"' + b"ab" * 32 + b'","request_id":"req-1",'
    b'"seq":7,"target_id":"usr_01JX","target_type":"user","v":1}'
)


def test_the_canonical_encoding_is_exactly_the_documented_bytes() -> None:
    assert canonical_bytes(ENTRY) == EXPECTED


def test_the_hash_is_sha256_of_those_bytes() -> None:
    assert entry_hash(ENTRY) == "3996f53ad4f64c6fbc31e204c2b8c3680829130cad3e5846a8c47d0f9172b419"


def test_every_column_of_the_model_is_hashed() -> None:
    from tillpay.audit.models import AuditEvent

    columns = {c.name for c in AuditEvent.__table__.columns}
    assert columns - set(HASHED_FIELDS) == {"hash"}


def test_times_always_carry_microseconds_in_utc() -> None:
    assert (
        format_time(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    )
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 2))  # noqa: DTZ001 - the naive time refused


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical_bytes({**ENTRY, "details": {"x": float("nan")}})
