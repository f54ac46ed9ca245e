"""TOTP verification (RFC 6238) with replay protection, QR enrolment and recovery codes."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillpay.kit.totp import (
    RECOVERY_CODE_ALPHABET,
    hash_recovery_code,
    new_recovery_codes,
    new_secret,
    normalise_recovery_code,
    provisioning_uri,
    qr_png_data_uri,
    qr_svg_data_uri,
    verify,
    verify_recovery_code,
)

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# Ten seconds into a 30-second step, so neighbouring steps are exactly ±30 s away.
NOW = datetime(2025, 6, 1, 12, 0, 10, tzinfo=UTC)
STEP = int(NOW.timestamp()) // 30
PEPPER = b"p" * 32


def code_at(step_offset: int, secret: str = SECRET) -> str:
    """The code an authenticator shows ``step_offset`` steps away from NOW."""
    return pyotp.TOTP(secret).at(NOW + timedelta(seconds=30 * step_offset))


# --- TOTP verification ---------------------------------------------------------------


def test_current_code_verifies_and_returns_its_time_step() -> None:
    assert verify(SECRET, code_at(0), last_used_step=None, now=NOW) == STEP


def test_same_code_is_refused_the_second_time() -> None:
    step = verify(SECRET, code_at(0), last_used_step=None, now=NOW)
    assert step is not None
    assert verify(SECRET, code_at(0), last_used_step=step, now=NOW) is None


def test_code_of_an_older_step_than_the_last_used_one_is_refused() -> None:
    assert verify(SECRET, code_at(-1), last_used_step=STEP, now=NOW) is None


def test_previous_step_code_is_accepted_once() -> None:
    step = verify(SECRET, code_at(-1), last_used_step=None, now=NOW)
    assert step == STEP - 1
    assert verify(SECRET, code_at(-1), last_used_step=step, now=NOW) is None


def test_code_from_two_steps_ago_is_refused() -> None:
    assert verify(SECRET, code_at(-2), last_used_step=None, now=NOW) is None


def test_next_step_code_is_accepted() -> None:
    assert verify(SECRET, code_at(1), last_used_step=None, now=NOW) == STEP + 1


def test_code_from_two_steps_ahead_is_refused() -> None:
    assert verify(SECRET, code_at(2), last_used_step=None, now=NOW) is None


def test_zero_drift_accepts_only_the_current_step() -> None:
    assert verify(SECRET, code_at(-1), last_used_step=None, now=NOW, drift_steps=0) is None
    assert verify(SECRET, code_at(0), last_used_step=None, now=NOW, drift_steps=0) == STEP


def test_drift_above_one_step_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="drift_steps"):
        verify(SECRET, code_at(0), last_used_step=None, now=NOW, drift_steps=2)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(SECRET, code_at(0), last_used_step=None, now=NOW.replace(tzinfo=None))


def test_code_with_spaces_is_normalised() -> None:
    code = code_at(0)
    assert verify(SECRET, f" {code[:3]} {code[3:]} ", last_used_step=None, now=NOW) == STEP


def test_wrong_code_is_refused() -> None:
    expected = {code_at(offset) for offset in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in expected)
    assert verify(SECRET, wrong, last_used_step=None, now=NOW) is None


def test_code_for_another_secret_is_refused() -> None:
    other = new_secret()
    assert verify(SECRET, code_at(0, other), last_used_step=None, now=NOW) is None


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda c: c[:5], id="5-digits"),
        pytest.param(lambda c: c + "0", id="7-digits"),
        pytest.param(lambda c: c[:5] + "a", id="letter"),
        pytest.param(
            lambda c: "".join(chr(ord(d) - ord("0") + 0x0660) for d in c), id="arabic-indic"
        ),
        pytest.param(lambda c: "-" + c[1:], id="sign"),
        pytest.param(lambda c: "", id="empty"),
    ],
)
def test_malformed_code_is_refused(mangle: Callable[[str], str]) -> None:
    assert verify(SECRET, mangle(code_at(0)), last_used_step=None, now=NOW) is None


@given(candidate=st.from_regex(r"\A[0-9]{6}\Z"))
def test_no_code_other_than_the_window_codes_is_ever_accepted(candidate: str) -> None:
    window = {code_at(offset) for offset in (-1, 0, 1)}
    result = verify(SECRET, candidate, last_used_step=None, now=NOW)
    if candidate in window:
        assert result is not None
    else:
        assert result is None


@given(timestamp=st.integers(min_value=946_684_800, max_value=4_102_444_800))
def test_current_code_verifies_at_any_time(timestamp: int) -> None:
    now = datetime.fromtimestamp(timestamp, UTC)
    code = pyotp.TOTP(SECRET).at(now)
    assert verify(SECRET, code, last_used_step=None, now=now) == timestamp // 30


def test_verify_uses_the_server_clock_by_default() -> None:
    assert verify(SECRET, pyotp.TOTP(SECRET).now(), last_used_step=None) is not None


# --- enrolment -----------------------------------------------------------------------


def test_new_secret_is_160_bit_base32_and_fresh() -> None:
    secret = new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert secret != new_secret()


def test_provisioning_uri_carries_issuer_account_and_secret() -> None:
    uri = provisioning_uri(SECRET, "ada@example.com", "tillpay shop")
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
    assert unquote(parsed.path) == "/tillpay shop:ada@example.com"
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["tillpay shop"]


def test_svg_qr_data_uri_decodes_to_svg() -> None:
    uri = qr_svg_data_uri(provisioning_uri(SECRET, "ada@example.com", "tillpay"))
    prefix = "data:image/svg+xml;base64,"
    assert uri.startswith(prefix)
    svg = base64.b64decode(uri.removeprefix(prefix), validate=True)
    assert svg.startswith(b"<svg")
    assert svg.rstrip().endswith(b"</svg>")


def test_png_qr_data_uri_decodes_to_png() -> None:
    uri = qr_png_data_uri(provisioning_uri(SECRET, "ada@example.com", "tillpay"))
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri.removeprefix(prefix), validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


# --- recovery codes ------------------------------------------------------------------


def test_recovery_codes_are_distinct_and_grouped() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    group = f"[{RECOVERY_CODE_ALPHABET}]{{5}}"
    for code in codes:
        assert re.fullmatch(rf"{group}(?:-{group}){{4}}", code)


def test_recovery_code_count_is_configurable() -> None:
    assert len(new_recovery_codes(3)) == 3


def test_recovery_code_alphabet_has_no_ambiguous_symbols() -> None:
    assert len(set(RECOVERY_CODE_ALPHABET)) == 32
    assert not set("ilou") & set(RECOVERY_CODE_ALPHABET)


def test_recovery_codes_carry_at_least_112_bits() -> None:
    code = new_recovery_codes(1)[0].replace("-", "")
    assert len(code) * math.log2(len(RECOVERY_CODE_ALPHABET)) >= 112


def test_recovery_code_normalisation_ignores_case_spaces_and_hyphens() -> None:
    code = new_recovery_codes(1)[0]
    canonical = code.replace("-", "")
    assert normalise_recovery_code(code) == canonical
    assert normalise_recovery_code(code.upper()) == canonical
    assert normalise_recovery_code(" " + code.replace("-", " ") + "\t") == canonical


def test_recovery_code_normalisation_reads_lookalike_letters_as_digits() -> None:
    code = "0" * 10 + "1" * 15
    typed = "O" * 10 + "I" * 5 + "l" * 5 + "L" * 5
    assert normalise_recovery_code(typed) == code


@pytest.mark.parametrize("text", ["", "abc", "0" * 24, "0" * 26, "u" * 25, "é" * 25])
def test_malformed_recovery_code_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a recovery code"):
        normalise_recovery_code(text)


def test_recovery_code_hash_verifies_the_same_code_in_any_spelling() -> None:
    code = new_recovery_codes(1)[0]
    stored = hash_recovery_code(code, pepper=PEPPER)
    assert stored.startswith("hmac-sha256$")
    assert code.replace("-", "") not in stored
    assert verify_recovery_code(code, stored, PEPPER)
    assert verify_recovery_code(code.upper().replace("-", " "), stored, PEPPER)


def test_recovery_code_hash_rejects_another_code() -> None:
    first, second = new_recovery_codes(2)
    assert not verify_recovery_code(second, hash_recovery_code(first, pepper=PEPPER), PEPPER)


def test_recovery_code_hash_rejects_another_pepper() -> None:
    code = new_recovery_codes(1)[0]
    stored = hash_recovery_code(code, pepper=PEPPER)
    assert not verify_recovery_code(code, stored, b"q" * 32)


def test_malformed_recovery_code_simply_fails_verification() -> None:
    stored = hash_recovery_code(new_recovery_codes(1)[0], pepper=PEPPER)
    assert not verify_recovery_code("not-a-code", stored, PEPPER)


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="pepper"):
        hash_recovery_code(new_recovery_codes(1)[0], pepper=b"short")
