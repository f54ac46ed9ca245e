"""Webhook signatures (Stripe's ``t=…,v1=…`` scheme): known answers, rotation, the replay
window and hostile headers."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillpay.kit.signing import DEFAULT_TOLERANCE, sign, verify

SECRET = b"tillpay-test-secret"
T = 1_700_000_000
BODY = b'{"id":"sbe_1","type":"session.succeeded"}'

# Stripe's scheme, vectors from /work/shared/reference/providers.md §2.5.
STRIPE_PAYLOAD = b'{"id":"evt_test_webhook","object":"event"}'
STRIPE_OLD = (
    b"whsec_test_secret",
    "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990",
)
STRIPE_NEW = (b"whsec_new", "a205fddac80d1399f0fd8556b976133f791b29797319edad0b299fcda7300bce")


def expected_digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, b"%d.%s" % (timestamp, body), hashlib.sha256).hexdigest()


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    assert sign(BODY, SECRET, timestamp=T) == f"t={T},v1={expected_digest(SECRET, T, BODY)}"


@pytest.mark.parametrize(("secret", "digest"), [STRIPE_OLD, STRIPE_NEW])
def test_sign_matches_stripes_known_answers(secret: bytes, digest: str) -> None:
    assert sign(STRIPE_PAYLOAD, secret, timestamp=T) == f"t={T},v1={digest}"


@pytest.mark.parametrize(("secret", "digest"), [STRIPE_OLD, STRIPE_NEW])
def test_verify_accepts_stripes_known_answers(secret: bytes, digest: str) -> None:
    assert verify(STRIPE_PAYLOAD, f"t={T},v1={digest}", [secret], now=T)


@pytest.mark.parametrize("secret", [STRIPE_OLD[0], STRIPE_NEW[0]])
def test_a_header_with_two_v1_values_verifies_under_either_secret(secret: bytes) -> None:
    header = f"t={T},v1={STRIPE_OLD[1]},v1={STRIPE_NEW[1]}"
    assert verify(STRIPE_PAYLOAD, header, [secret], now=T)


def test_any_of_several_configured_secrets_verifies() -> None:
    header = f"t={T},v1={STRIPE_NEW[1]}"
    assert verify(STRIPE_PAYLOAD, header, [STRIPE_OLD[0], STRIPE_NEW[0]], now=T)


def test_a_matching_v1_among_junk_values_verifies() -> None:
    header = f"t={T},v1=00,v1={expected_digest(SECRET, T, BODY)},v1=zz,v0=ignored"
    assert verify(BODY, header, [SECRET], now=T)


def test_a_signature_only_in_v0_is_ignored() -> None:
    assert not verify(BODY, f"t={T},v0={expected_digest(SECRET, T, BODY)}", [SECRET], now=T)


def test_another_secret_or_body_or_timestamp_fails() -> None:
    header = sign(BODY, SECRET, timestamp=T)
    assert not verify(BODY, header, [b"other-secret"], now=T)
    assert not verify(BODY + b" ", header, [SECRET], now=T)
    digest = expected_digest(SECRET, T, BODY)
    assert not verify(BODY, f"t={T + 1},v1={digest}", [SECRET], now=T)


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (10**9, False)],
)
def test_timestamps_are_accepted_within_300_seconds_either_way(skew: int, accepted: bool) -> None:
    # A positive skew: the signature is from the past; negative: from the future.
    assert DEFAULT_TOLERANCE == 300
    assert verify(BODY, sign(BODY, SECRET, timestamp=T), [SECRET], now=T + skew) is accepted


@pytest.mark.parametrize("tolerance", [0, -1, -(10**9)])
def test_the_replay_window_cannot_be_disabled(tolerance: int) -> None:
    header = sign(BODY, SECRET, timestamp=T)
    assert not verify(BODY, header, [SECRET], tolerance=tolerance, now=T)


VALID = f"v1={expected_digest(SECRET, T, BODY)}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        VALID,  # no timestamp
        f"t={T}",  # no signature
        f"t={T},v1=",
        f"t=abc,{VALID}",
        f"t=-{T},{VALID}",
        f"t=+{T},{VALID}",
        f"t={T}.0,{VALID}",
        f"t=²,{VALID}",  # a digit to str.isdigit, not to int()
        "t=\u0661\u0667" + "\u0660" * 8 + f",{VALID}",  # T in Arabic-Indic digits
        f"t={T};{VALID}",
        "=,=,,=",
        f"t={T},{VALID}" + ",v1=00" * 900,  # 5 KB: refused before any parsing
    ],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    assert not verify(BODY, header, [SECRET], now=T)


def test_no_configured_secret_verifies_nothing() -> None:
    assert not verify(BODY, sign(BODY, SECRET, timestamp=T), [], now=T)


@given(st.text(max_size=300))
def test_arbitrary_header_text_is_refused_without_raising(header: str) -> None:
    assert not verify(BODY, header, [SECRET], now=T)
