"""Password hashing (Argon2id) and password policy (NIST SP 800-63B, ASVS 6.2).

Hashing
    :class:`PasswordHasher` stores Argon2id PHC strings and verifies them off the event
    loop, in at most ``max_concurrency`` worker threads at once, so a login storm cannot
    starve the thread pool. Bcrypt hashes (``$2a$``/``$2b$``/``$2y$``) imported from
    another system still verify, and a successful verification of one (or of an Argon2
    hash with outdated parameters) returns an Argon2id ``new_hash`` for the caller to
    store. Passwords are verified exactly as sent: no trimming, case folding, Unicode
    normalisation or truncation. Bcrypt only reads the first 72 bytes of a password, so
    a password longer than 72 UTF-8 bytes never matches a bcrypt hash (it would
    otherwise match the hash of its own 72-byte prefix); such users must reset their
    password. An unknown or garbled stored hash is a non-match, never an exception.

Policy
    :func:`check_password` returns human-readable problems: a length between
    ``min_length`` (>= 8) and ``max_length`` (>= 128) code points after NFC
    normalisation, no composition rules, and no common, trivial or context-derived
    password (the bundled list is the 30,000 most common passwords of the zxcvbn
    project, see ``data/common-passwords.txt``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
import threading
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any, Final, TypeVar

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "OWASP_MIN_MEMORY_COST_KIB",
    "OWASP_MIN_TIME_COST",
    "HashParams",
    "PasswordHasher",
    "VerifyResult",
    "check_password",
    "common_passwords",
]

OWASP_MIN_MEMORY_COST_KIB: Final = 19_456
"""OWASP Password Storage cheat sheet minimum for Argon2id: 19 MiB ..."""
OWASP_MIN_TIME_COST: Final = 2
"""... with 2 iterations and a parallelism of 1."""

ABSOLUTE_MIN_LENGTH: Final = 8
"""NIST SP 800-63B floor for ``min_length``."""
MIN_MAX_LENGTH: Final = 128
"""``max_length`` may not be configured below this (NIST: allow at least 64)."""

_BCRYPT_MAX_BYTES: Final = 72
_BCRYPT_PREFIXES: Final = ("$2a$", "$2b$", "$2y$")
_COMMON_PASSWORDS_RESOURCE: Final = "common-passwords.txt"
# Shorter e-mail local parts and context words would reject too many good passwords.
_MIN_CONTAINED_WORD_LENGTH: Final = 3


@dataclass(frozen=True, slots=True)
class HashParams:
    """Argon2id cost parameters; the defaults are the OWASP minimum.

    Anything weaker than the OWASP minimum raises ``ValueError`` unless
    ``allow_weak_for_tests=True`` is passed explicitly: only test suites that need fast
    hashing should do so (see :meth:`insecure_for_tests`); never in production.
    """

    memory_cost: int = OWASP_MIN_MEMORY_COST_KIB
    """Memory in KiB."""
    time_cost: int = OWASP_MIN_TIME_COST
    """Iterations."""
    parallelism: int = 1
    """Lanes."""
    allow_weak_for_tests: bool = False

    def __post_init__(self) -> None:
        if self.parallelism < 1 or self.time_cost < 1 or self.memory_cost < 8 * self.parallelism:
            raise ValueError("invalid Argon2 parameters")
        weak = self.memory_cost < OWASP_MIN_MEMORY_COST_KIB or self.time_cost < OWASP_MIN_TIME_COST
        if weak and not self.allow_weak_for_tests:
            raise ValueError(
                "Argon2id parameters below the OWASP minimum "
                f"(m={OWASP_MIN_MEMORY_COST_KIB} KiB, t={OWASP_MIN_TIME_COST}, p=1); "
                "pass allow_weak_for_tests=True only in tests"
            )

    @classmethod
    def insecure_for_tests(cls) -> HashParams:
        """Return the cheapest valid parameters, for fast test suites only."""
        return cls(memory_cost=8, time_cost=1, parallelism=1, allow_weak_for_tests=True)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :meth:`PasswordHasher.verify`.

    ``new_hash`` is set only when ``ok`` is true and the stored hash must be replaced
    (outdated Argon2 parameters, or a bcrypt hash imported from another system).
    """

    ok: bool
    new_hash: str | None = None


_FAILED: Final = VerifyResult(ok=False)


def default_hash_concurrency(cores: int | None = None) -> int:
    """Hashes to run at once: half the cores this process may use, at least one. Argon2
    releases the GIL, so more would take the cores the event loop needs to keep serving
    every other request during a login storm."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
    return max(1, cores // 2)


T = TypeVar("T")

# Niceness added to hashing threads (Linux schedules threads individually).
HASH_THREAD_NICENESS: Final = 10


def _below_request_priority() -> None:
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HASH_THREAD_NICENESS
        )
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


class PasswordHasher:
    """Argon2id hashing and verification that runs in worker threads.

    ``max_concurrency`` bounds how many hash computations run at once (each takes
    ``memory_cost`` KiB of memory); further callers wait their turn on the event loop.
    """

    def __init__(self, params: HashParams | None = None, *, max_concurrency: int = 4) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.params: Final = params if params is not None else HashParams()
        self._argon2 = argon2.PasswordHasher(
            time_cost=self.params.time_cost,
            memory_cost=self.params.memory_cost,
            parallelism=self.params.parallelism,
            type=argon2.Type.ID,
        )
        # Own threads, at most max_concurrency: a cancelled caller's hash that already
        # started still holds its thread, so the bound is on threads really busy. They run
        # at a lower CPU priority than the event loop (below), so under a login storm the
        # kernel serves every other request first and hashing takes what is left.
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency,
            thread_name_prefix="tillpay-argon2",
            initializer=_below_request_priority,
        )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def hash(self, password: str) -> str:
        """Return the Argon2id PHC string of ``password``, exactly as given.

        Raises ``UnicodeEncodeError`` for lone surrogates (:func:`check_password`
        rejects those first).
        """
        return await self._in_thread(self._argon2.hash, password)

    async def verify(self, stored_hash: str, password: str) -> VerifyResult:
        """Check ``password`` against ``stored_hash`` (Argon2 or imported bcrypt)."""
        return await self._in_thread(self._verify_sync, stored_hash, password)

    async def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification, for logins of unknown accounts.

        Verifies against the hash of a random password (computed once, lazily), so the
        response time does not reveal whether an account exists.
        """
        await self._in_thread(self._dummy_verify_sync, password)

    def _verify_sync(self, stored_hash: str, password: str) -> VerifyResult:
        if not isinstance(stored_hash, str) or not isinstance(password, str):
            return _FAILED
        if stored_hash.startswith("$argon2"):
            return self._verify_argon2(stored_hash, password)
        if stored_hash.startswith(_BCRYPT_PREFIXES):
            return self._verify_bcrypt(stored_hash, password)
        return _FAILED

    def _verify_argon2(self, stored_hash: str, password: str) -> VerifyResult:
        try:
            self._argon2.verify(stored_hash, password)
        # InvalidHashError covers garbled strings; UnicodeEncodeError lone surrogates.
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return _FAILED
        if self._argon2.check_needs_rehash(stored_hash):
            return VerifyResult(ok=True, new_hash=self._argon2.hash(password))
        return VerifyResult(ok=True)

    def _verify_bcrypt(self, stored_hash: str, password: str) -> VerifyResult:
        try:
            secret = password.encode("utf-8")
            # bcrypt ignores bytes past 72 (or refuses them): never let a long password
            # match the hash of its prefix.
            if len(secret) > _BCRYPT_MAX_BYTES:
                return _FAILED
            ok = bcrypt.checkpw(secret, stored_hash.encode("ascii"))
        except ValueError:  # garbled hash, non-ASCII hash, lone surrogates
            return _FAILED
        if not ok:
            return _FAILED
        return VerifyResult(ok=True, new_hash=self._argon2.hash(password))

    def _dummy_verify_sync(self, password: str) -> None:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(32))
            dummy_hash = self._dummy_hash
        self._verify_sync(dummy_hash, password)


@cache
def common_passwords() -> frozenset[str]:
    """Return the bundled common-password list (lower-cased), loaded once."""
    text = (
        resources.files("tillpay.kit")
        .joinpath("data", _COMMON_PASSWORDS_RESOURCE)
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def check_password(
    password: str,
    *,
    email: str | None,
    min_length: int = 12,
    max_length: int = 128,
    context_words: Iterable[str] = (),
) -> list[str]:
    """Return the problems that make ``password`` unacceptable; empty means acceptable.

    Length is counted in Unicode code points after NFC normalisation. There are no
    composition rules. Rejected: too short or too long; in the common-password list
    (case-insensitive); a single repeated character or a run such as ``123456789012``
    or ``abcdefghijkl``; containing the e-mail's local part or any of
    ``context_words`` (e.g. the shop name), case-insensitively, when that part or word
    has at least 3 characters. Raises ``ValueError`` for ``min_length`` below 8,
    ``max_length`` below 128, or ``min_length`` above ``max_length``.
    """
    if min_length < ABSOLUTE_MIN_LENGTH:
        raise ValueError(f"min_length must be at least {ABSOLUTE_MIN_LENGTH}")
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}")
    if min_length > max_length:
        raise ValueError("min_length must not exceed max_length")

    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return ["Password contains invalid characters."]

    normalised = unicodedata.normalize("NFC", password)
    folded = normalised.casefold()
    problems: list[str] = []
    if len(normalised) < min_length:
        problems.append(f"Password must be at least {min_length} characters long.")
    elif len(normalised) > max_length:
        problems.append(f"Password must be at most {max_length} characters long.")

    if normalised.lower() in common_passwords() or _is_trivial(folded):
        problems.append("Password is too common or easy to guess.")
    if email is not None and _contains_email_local_part(folded, email):
        problems.append("Password must not contain your e-mail address.")
    problems.extend(
        f"Password must not contain {word!r}." for word in _context_words_in(folded, context_words)
    )
    return problems


def _is_trivial(folded: str) -> bool:
    """A single repeated character, or a forward/backward run over digits or letters."""
    if len(set(folded)) <= 1:
        return True
    return any(_is_cyclic_run(folded, alphabet) for alphabet in _RUN_ALPHABETS)


# Runs wrap around, so "123456789012" and "zabc..." count as runs too.
_RUN_ALPHABETS: Final = (string.digits, string.ascii_lowercase)


def _is_cyclic_run(text: str, alphabet: str) -> bool:
    if not all(char in alphabet for char in text):
        return False
    size = len(alphabet)
    steps = {(alphabet.index(b) - alphabet.index(a)) % size for a, b in pairwise(text)}
    return steps in ({1}, {size - 1})


def _contains_email_local_part(folded: str, email: str) -> bool:
    local = email.rpartition("@")[0] if "@" in email else email
    local = unicodedata.normalize("NFC", local).casefold()
    # "alice+shop@example.com": the part before the sub-address tag counts too.
    candidates = {local, local.partition("+")[0]}
    return any(len(part) >= _MIN_CONTAINED_WORD_LENGTH and part in folded for part in candidates)


def _context_words_in(folded: str, context_words: Iterable[str]) -> list[str]:
    found: list[str] = []
    for word in context_words:
        key = unicodedata.normalize("NFC", word.strip()).casefold()
        if len(key) >= _MIN_CONTAINED_WORD_LENGTH and key in folded and word.strip() not in found:
            found.append(word.strip())
    return found
