"""kit.sealed_claims: a known answer, and every way a value is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

from tillpay.kit.sealed_claims import seal, unseal

KEY = b"k" * 32
REQUIRED = {"sub": str, "iat": int}


def test_a_known_answer() -> None:
    sealed = seal(KEY, "v1", {"sub": "usr_1", "iat": 5})
    payload = base64.urlsafe_b64encode(b'{"iat":5,"sub":"usr_1"}').rstrip(b"=").decode()
    mac = hmac.new(KEY, f"v1.{payload}".encode(), hashlib.sha256).digest()
    assert sealed == f"v1.{payload}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert unseal(KEY, "v1", sealed, REQUIRED) == {"sub": "usr_1", "iat": 5}


def test_another_key_or_version_is_refused() -> None:
    sealed = seal(KEY, "v1", {"sub": "usr_1", "iat": 5})
    assert unseal(b"x" * 32, "v1", sealed, REQUIRED) is None
    assert unseal(KEY, "v2", sealed, REQUIRED) is None


def test_a_changed_payload_is_refused() -> None:
    version, _payload, mac = seal(KEY, "v1", {"sub": "usr_1", "iat": 5}).split(".")
    forged = base64.urlsafe_b64encode(b'{"iat":5,"sub":"usr_2"}').rstrip(b"=").decode()
    assert unseal(KEY, "v1", f"{version}.{forged}.{mac}", REQUIRED) is None


def test_missing_or_mistyped_claims_are_refused() -> None:
    assert unseal(KEY, "v1", seal(KEY, "v1", {"sub": "usr_1"}), REQUIRED) is None
    assert unseal(KEY, "v1", seal(KEY, "v1", {"sub": "usr_1", "iat": "5"}), REQUIRED) is None
    assert unseal(KEY, "v1", seal(KEY, "v1", {"sub": 1, "iat": 5}), REQUIRED) is None


def test_garbage_and_oversized_values_are_refused_without_an_error() -> None:
    for value in ("", "v1", "v1..", "v1.!!.!!", "v1.e30.AAAA", "v1." + "a" * 2000 + ".b"):
        assert unseal(KEY, "v1", value, REQUIRED) is None
