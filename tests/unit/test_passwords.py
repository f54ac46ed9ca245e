"""Password hashing (Argon2id, bcrypt import) and password policy."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import unicodedata

import argon2
import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillpay.kit.passwords import (
    HashParams,
    PasswordHasher,
    check_password,
    common_passwords,
    default_hash_concurrency,
)

PASSWORD = "correct horse battery staple"
FAST = HashParams.insecure_for_tests()


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    """Production-strength parameters (the OWASP minimum)."""
    return PasswordHasher()


@pytest.fixture(scope="module")
def fast_hasher() -> PasswordHasher:
    return PasswordHasher(FAST)


# --- hashing ---------------------------------------------------------------------------


async def test_hash_is_argon2id_phc_with_at_least_owasp_parameters(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(PASSWORD)

    match = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", stored)
    assert match is not None
    memory, time, parallelism = (int(g) for g in match.groups())
    assert memory >= 19456
    assert time >= 2
    assert parallelism >= 1


async def test_default_hash_uses_exactly_the_owasp_minimum(hasher: PasswordHasher) -> None:
    assert (await hasher.hash(PASSWORD)).startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_params_weaker_than_owasp_minimum_are_refused_without_the_test_flag() -> None:
    with pytest.raises(ValueError, match="OWASP"):
        HashParams(memory_cost=8, time_cost=1)


async def test_correct_password_verifies_without_rehash(hasher: PasswordHasher) -> None:
    result = await hasher.verify(await hasher.hash(PASSWORD), PASSWORD)

    assert result.ok
    assert result.new_hash is None


async def test_wrong_password_does_not_verify(hasher: PasswordHasher) -> None:
    result = await hasher.verify(await hasher.hash(PASSWORD), "correct horse battery stapler")

    assert not result.ok
    assert result.new_hash is None


@pytest.mark.parametrize(
    "variant",
    [PASSWORD.upper(), PASSWORD.title(), PASSWORD + " ", " " + PASSWORD, PASSWORD[:-1]],
    ids=["upper", "title", "trailing-space", "leading-space", "truncated"],
)
async def test_password_is_verified_exactly_as_sent(
    fast_hasher: PasswordHasher, variant: str
) -> None:
    stored = await fast_hasher.hash(PASSWORD)

    assert not (await fast_hasher.verify(stored, variant)).ok


async def test_long_password_does_not_match_hash_of_its_72_byte_prefix_argon2(
    fast_hasher: PasswordHasher,
) -> None:
    long_password = "x" * 72 + "y"
    stored = await fast_hasher.hash(long_password[:72])

    assert not (await fast_hasher.verify(stored, long_password)).ok


async def test_bcrypt_hash_verifies_and_is_upgraded_to_argon2id(hasher: PasswordHasher) -> None:
    imported = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()

    result = await hasher.verify(imported, PASSWORD)

    assert result.ok
    assert result.new_hash is not None
    assert result.new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await hasher.verify(result.new_hash, PASSWORD)).ok


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
async def test_every_bcrypt_variant_prefix_verifies(
    fast_hasher: PasswordHasher, prefix: str
) -> None:
    imported = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    imported = prefix + imported[4:]

    assert (await fast_hasher.verify(imported, PASSWORD)).ok


async def test_bcrypt_wrong_password_does_not_verify(fast_hasher: PasswordHasher) -> None:
    imported = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()

    result = await fast_hasher.verify(imported, PASSWORD.upper())

    assert not result.ok
    assert result.new_hash is None


async def test_password_over_72_bytes_does_not_match_bcrypt_hash_of_its_prefix(
    fast_hasher: PasswordHasher,
) -> None:
    prefix = "é" * 36  # 72 UTF-8 bytes
    imported = bcrypt.hashpw(prefix.encode(), bcrypt.gensalt(rounds=4)).decode()

    assert (await fast_hasher.verify(imported, prefix)).ok
    assert not (await fast_hasher.verify(imported, prefix + "x")).ok


async def test_argon2_hash_with_weaker_params_yields_rehash_with_current_params() -> None:
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    current = PasswordHasher(HashParams(memory_cost=32, time_cost=2, allow_weak_for_tests=True))

    result = await current.verify(old, PASSWORD)

    assert result.ok
    assert result.new_hash is not None
    assert result.new_hash.startswith("$argon2id$v=19$m=32,t=2,p=1$")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$bm90IGEgaGFzaA$",
        "$argon2id$v=19$m=8,t=1,p=1$!!!$???",
        "$2b$04$short",
        "$2b$04$" + "é" * 53,
        "$1$md5crypt$hash",
        "pbkdf2_sha256$600000$salt$hash",
        PASSWORD,
    ],
)
async def test_garbled_or_unknown_hash_is_a_non_match_not_an_error(
    fast_hasher: PasswordHasher, stored: str
) -> None:
    assert (await fast_hasher.verify(stored, PASSWORD)).ok is False


async def test_lone_surrogate_password_is_a_non_match_not_an_error(
    fast_hasher: PasswordHasher,
) -> None:
    stored = await fast_hasher.hash(PASSWORD)

    assert not (await fast_hasher.verify(stored, "\ud800")).ok


async def test_dummy_verify_runs_one_argon2_verification_against_a_hash_made_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        seen.append(str(hash))
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    hasher = PasswordHasher(FAST)

    await hasher.dummy_verify(PASSWORD)
    await hasher.dummy_verify("another guess")

    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0].startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_hashing_runs_off_the_event_loop(hasher: PasswordHasher) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(hasher.hash(f"{PASSWORD} {i}") for i in range(4)))
    done.set()
    await task

    # Hashing on the loop would let the ticker run only between the four hashes.
    assert ticks > 50


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(max_size=200))
async def test_any_text_password_round_trips(password: str) -> None:
    hasher = PasswordHasher(FAST)

    result = await hasher.verify(await hasher.hash(password), password)

    assert result.ok
    assert result.new_hash is None


# --- policy ----------------------------------------------------------------------------

ACCEPTABLE_8 = "tz7#qLm2"


def test_min_length_below_8_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="min_length"):
        check_password(PASSWORD, email=None, min_length=7)


def test_max_length_below_128_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="max_length"):
        check_password(PASSWORD, email=None, max_length=64)


def test_7_characters_are_rejected_with_min_8() -> None:
    assert check_password(ACCEPTABLE_8[:7], email=None, min_length=8) != []


def test_8_characters_are_accepted_with_min_8() -> None:
    assert check_password(ACCEPTABLE_8, email=None, min_length=8) == []


def test_default_min_length_is_12() -> None:
    assert check_password("tz7#qLm2vw9", email=None) != []
    assert check_password("tz7#qLm2vw9K", email=None) == []


@pytest.mark.parametrize("length", [64, 128])
def test_long_passwords_up_to_the_maximum_are_accepted(length: int) -> None:
    password = (PASSWORD + " ") * 10

    assert check_password(password[:length], email=None) == []


def test_password_longer_than_the_maximum_is_rejected() -> None:
    assert check_password(((PASSWORD + " ") * 10)[:129], email=None) != []


def test_length_is_counted_in_code_points_after_nfc() -> None:
    eleven = unicodedata.normalize("NFD", "crème brûlé")  # 14 code points, 11 after NFC
    twelve = unicodedata.normalize("NFD", "crème brûlée")

    assert len(eleven) >= 12
    assert check_password(eleven, email=None) != []
    assert check_password(twelve, email=None) == []


def test_no_composition_rules_for_an_all_lowercase_passphrase() -> None:
    assert check_password("purple monkey dishwasher", email=None) == []


@pytest.mark.parametrize(
    "password", ["password1234", "qwertyuiop12", "1qaz2wsx3edc", "PassWord1234"]
)
def test_common_passwords_are_rejected_case_insensitively(password: str) -> None:
    assert check_password(password, email=None) != []


@pytest.mark.parametrize(
    "password", ["aaaaaaaaaaaa", "123456789012", "abcdefghijkl", "ZYXWVUTSRQPO", "............"]
)
def test_repeated_characters_and_trivial_runs_are_rejected(password: str) -> None:
    assert check_password(password, email=None) != []


def test_password_containing_the_email_local_part_is_rejected() -> None:
    assert check_password("Rosalind-Summer-Garden", email="rosalind@example.com") != []


def test_short_email_local_part_is_not_held_against_the_password() -> None:
    assert check_password("job market in autumn", email="jo@example.com") == []


def test_password_containing_a_context_word_is_rejected() -> None:
    problems = check_password(
        "my TillPay checkout key", email=None, context_words=["tillpay", "Acme Shop"]
    )

    assert problems == ["Password must not contain 'tillpay'."]


def test_bundled_list_has_at_least_10000_lowercase_entries() -> None:
    passwords = common_passwords()

    assert len(passwords) >= 10_000
    assert all(p == p.lower() and not p.startswith("#") for p in passwords)
    assert {"123456", "password", "qwerty"} <= passwords


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_by_default_hashing_uses_at_most_half_the_cores(cores: int, expected: int) -> None:
    assert default_hash_concurrency(cores) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities")
async def test_hashing_threads_yield_the_cpu_to_the_event_loop() -> None:
    """Under a login storm the kernel must prefer the threads serving other requests."""
    hasher = PasswordHasher(FAST, max_concurrency=1)

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    in_hashing_thread = await hasher._in_thread(niceness)
    assert in_hashing_thread >= niceness() + 5
