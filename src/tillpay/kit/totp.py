"""TOTP (RFC 6238) second factor and recovery codes.

* Secrets are 160-bit base32 strings (RFC 4226 §4 recommends 160 bits); codes are the
  authenticator-app default: 6 digits, 30-second steps, HMAC-SHA1.
* `verify` accepts a code for the current step or one step either side (ASVS 6.5.5: a
  code lives at most ~30 s beyond its own step) and only for a step strictly after the
  last one used, so a code can never be used twice (RFC 6238 §5.2, ASVS 6.5.1). The
  caller stores the returned step and must update it atomically with the login (for
  example a conditional ``UPDATE ... WHERE last_totp_step < :step``), or two concurrent
  requests could both pass. Time is always the server clock (ASVS 6.5.8).
* Recovery codes carry 125 bits of entropy and are stored as HMAC-SHA256 with a server
  pepper; see `hash_recovery_code` for why no password KDF is needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from datetime import UTC, datetime
from typing import Final

import pyotp
import segno

from tillpay.kit.ids import CROCKFORD_ALPHABET

__all__ = [
    "CODE_DIGITS",
    "MAX_DRIFT_STEPS",
    "RECOVERY_CODE_ALPHABET",
    "RECOVERY_CODE_LENGTH",
    "STEP_SECONDS",
    "hash_recovery_code",
    "new_recovery_codes",
    "new_secret",
    "normalise_recovery_code",
    "provisioning_uri",
    "qr_png_data_uri",
    "qr_svg_data_uri",
    "verify",
    "verify_recovery_code",
]

CODE_DIGITS: Final = 6
STEP_SECONDS: Final = 30
MAX_DRIFT_STEPS: Final = 1
"""More than one step of clock drift would keep a code alive for over a minute."""

RECOVERY_CODE_ALPHABET: Final = CROCKFORD_ALPHABET.lower()
"""32 symbols without i, l, o and u, so codes survive being read aloud or copied by hand."""
RECOVERY_CODE_LENGTH: Final = 25
"""25 symbols x 5 bits = 125 bits, above ASVS 6.5.2's 112-bit bar for a fast hash."""
_RECOVERY_GROUP: Final = 5
_RECOVERY_HASH_PREFIX: Final = "hmac-sha256$"
_MIN_PEPPER_BYTES: Final = 32
# Crockford decoding: the letters people type for the digits they see.
_RECOVERY_LOOKALIKES: Final = str.maketrans({"o": "0", "i": "1", "l": "1"})
_RECOVERY_SEPARATORS: Final = str.maketrans("", "", " -\t")


# --- TOTP ----------------------------------------------------------------------------


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS)


def new_secret() -> str:
    """Return a new random TOTP secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """Return the ``otpauth://totp/...`` URI an authenticator app enrols from."""
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def _qr(uri: str) -> segno.QRCode:
    # A regular (not micro) QR code: authenticator apps cannot read micro QR codes.
    return segno.make_qr(uri, error="m")


def qr_svg_data_uri(uri: str) -> str:
    """Render ``uri`` as a QR code in a ``data:image/svg+xml;base64,...`` URI."""
    buffer = io.BytesIO()
    _qr(uri).save(buffer, kind="svg", scale=4, border=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def qr_png_data_uri(uri: str) -> str:
    """Render ``uri`` as a QR code in a ``data:image/png;base64,...`` URI."""
    return _qr(uri).png_data_uri(scale=4, border=4)


def verify(
    secret: str,
    code: str,
    *,
    last_used_step: int | None,
    now: datetime | None = None,
    drift_steps: int = MAX_DRIFT_STEPS,
) -> int | None:
    """Check ``code`` and return the time step it belongs to, or None if it is refused.

    Accepts a 6-digit code (spaces ignored) for the current step ± ``drift_steps`` whose
    step is strictly greater than ``last_used_step``. Store the returned step as the new
    ``last_used_step``. ``now`` exists for tests; production callers leave it to the
    server clock. Raises ValueError for a drift above one step or a naive ``now``.
    """
    if not 0 <= drift_steps <= MAX_DRIFT_STEPS:
        raise ValueError(f"drift_steps must be between 0 and {MAX_DRIFT_STEPS}")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    candidate = code.replace(" ", "")
    if len(candidate) != CODE_DIGITS or not (candidate.isascii() and candidate.isdigit()):
        return None

    totp = _totp(secret)
    current = totp.timecode(now)
    matched: int | None = None
    # Every step in the window is compared, match or not, so timing reveals nothing.
    # On a (one in a million) collision the latest step wins: recording it keeps the
    # same code from being replayed against the later step.
    for step in range(current - drift_steps, current + drift_steps + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), candidate.encode()) and (
            last_used_step is None or step > last_used_step
        ):
            matched = step
    return matched


# --- recovery codes ------------------------------------------------------------------


def new_recovery_codes(n: int = 10) -> list[str]:
    """Return ``n`` distinct recovery codes like ``7kq2m-0xz9t-...`` (5 groups of 5)."""
    if n < 1:
        raise ValueError("n must be positive")
    codes: set[str] = set()
    while len(codes) < n:
        codes.add(
            "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        )
    return [
        "-".join(code[i : i + _RECOVERY_GROUP] for i in range(0, len(code), _RECOVERY_GROUP))
        for code in codes
    ]


def normalise_recovery_code(text: str) -> str:
    """Return the canonical form of a typed recovery code (lower case, no separators).

    Case, spaces and hyphens are ignored, and ``o``/``i``/``l`` read as ``0``/``1``.
    Raises ValueError when the result is not a well-formed code.
    """
    compact = text.translate(_RECOVERY_SEPARATORS).lower().translate(_RECOVERY_LOOKALIKES)
    if len(compact) != RECOVERY_CODE_LENGTH or not all(
        c in RECOVERY_CODE_ALPHABET for c in compact
    ):
        raise ValueError("not a recovery code")
    return compact


def _check_pepper(pepper: bytes) -> None:
    if len(pepper) < _MIN_PEPPER_BYTES:
        raise ValueError(f"pepper must be at least {_MIN_PEPPER_BYTES} bytes")


def hash_recovery_code(code: str, *, pepper: bytes) -> str:
    """Return the value to store for a recovery code: ``hmac-sha256$<hex>``.

    A password KDF (argon2) is not needed: each code has 125 bits of entropy, so even a
    fast hash of a leaked table cannot be brute-forced (ASVS 6.5.2 asks for a KDF only
    below 112 bits), and codes are unique random values, so a salt adds nothing. The
    pepper, kept outside the database, additionally makes a database-only leak useless.
    Being deterministic, the hash can also serve as an indexed lookup key.
    """
    _check_pepper(pepper)
    digest = hmac.new(pepper, normalise_recovery_code(code).encode("ascii"), hashlib.sha256)
    return _RECOVERY_HASH_PREFIX + digest.hexdigest()


def verify_recovery_code(code: str, stored_hash: str, pepper: bytes) -> bool:
    """Tell, in constant time, whether ``code`` matches ``stored_hash``.

    Malformed input is simply a mismatch. Single use is the caller's job: mark the code
    used in the same transaction, with a conditional update.
    """
    _check_pepper(pepper)
    try:
        candidate = hash_recovery_code(code, pepper=pepper)
    except ValueError:
        return False
    return hmac.compare_digest(candidate.encode(), stored_hash.encode())
