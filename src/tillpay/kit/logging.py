"""Structured logging with secret redaction for every log line, ours and third-party.

`configure_logging` sets up structlog and routes the standard library's `logging`
(uvicorn, SQLAlchemy, Alembic, ...) through the same processor chain, so the redaction
processor `redact_event` sees every event right before it is rendered.

Redaction policy, in short (ASVS 16.2.5, 16.4.1):

* A value under a sensitive key (password, token, secret, authorization, cookie,
  api key, signature, TOTP/OTP, CVV, card number, ...) becomes ``"[REDACTED]"``, at any
  depth. Matching is case-insensitive, ignores ``-``/``_``/camelCase differences and
  also catches longer keys such as ``x_api_key`` or ``refresh_token``. We prefer
  over-redaction: only the keys in `_ALLOWED_KEYS` escape the "contains token" rule, and
  ``None``/booleans are kept because they cannot carry a secret.
* Free text anywhere (the message, values, keys, exception text) is scrubbed of
  Luhn-valid card numbers, ``Bearer``/``Basic`` credentials, JWTs, Stripe/Paystack keys,
  ``name=value`` pairs and URL query parameters with sensitive names, and URL passwords.
* Objects of other types are rendered with ``repr`` first and then scrubbed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any, Final, TextIO, cast
from uuid import UUID

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tillpay.kit.telemetry import add_trace_ids

__all__ = [
    "configure_logging",
    "get_logger",
    "is_sensitive_key",
    "redact_data",
    "redact_event",
    "redact_text",
]

REDACTED: Final = "[REDACTED]"
_REDACTED_JWT: Final = "[REDACTED_JWT]"

# Nesting deeper than this is rendered with repr and scrubbed as text; it also stops
# self-referencing containers from recursing forever.
_MAX_DEPTH: Final = 16
# Nothing we redact fits in fewer characters ("pin=1" is the shortest).
_MIN_TEXT_LEN: Final = 5
# A digit run this long cannot be checked window by window in reasonable time; no
# legitimate log value needs it intact, so it is masked whole.
_MAX_DIGIT_RUN: Final = 256

# --- sensitive keys ------------------------------------------------------------------

# Matched against a normalised key: lower snake_case ("X-Api-Key" and "xApiKey" become
# "x_api_key"). Short words must be a whole "_"-separated part, so "company" (pan),
# "footprint" (otp) or "shipping" (pin) stay visible; "authorization" and "cookie" must
# end the key, so "authorization_decision" (an audit field) stays visible.
_SENSITIVE_KEY_RE: Final = re.compile(
    r"password|passwd|passphrase|secret|token|credential|api_?key|private_?key"
    r"|recovery_?codes?|backup_?codes?|card_?number|security_?code|signature|session_?id"
    r"|totp|cvv|cvc|auth_?code"
    r"|(?:^|_)(?:otp|pan|sig|sign|pin|pwd|sid|pass)(?:_|$)"
    r"|(?:authorization|cookies?)$|^auth$"
)
# Names that contain "token" but never hold one; kept so token metadata stays useful.
_ALLOWED_KEYS: Final = frozenset({"token_type", "tokens_valid_after"})
_CAMEL_BOUNDARY_RE: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM_RE: Final = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Tell whether values stored under ``key`` must never be logged."""
    normalized = _NON_ALNUM_RE.sub("_", _CAMEL_BOUNDARY_RE.sub("_", key).lower()).strip("_")
    if normalized in _ALLOWED_KEYS:
        return False
    return _SENSITIVE_KEY_RE.search(normalized) is not None


# --- free text -----------------------------------------------------------------------

_B64URL: Final = r"[A-Za-z0-9_-]"
# Header and payload of a JWS/JWE are base64url JSON objects, so they start with "eyJ".
_JWT_RE: Final = re.compile(
    rf"(?<![A-Za-z0-9_-])eyJ{_B64URL}*\.{_B64URL}+\.{_B64URL}*(?:\.{_B64URL}*){{0,2}}"
)
# Stripe secret/restricted/ephemeral keys and webhook secrets (Paystack shares the
# sk_live_/sk_test_ shape), plus Stripe client secrets such as "pi_..._secret_...".
_PROVIDER_KEY_RE: Final = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:sk|rk|ek)_(?:live|test)_[A-Za-z0-9]+"
    r"|whsec_[A-Za-z0-9+/=]+"
    r"|(?:pi|seti|cs|src)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+)"
)
_AUTH_SCHEME_RE: Final = re.compile(
    r"\b(bearer|basic|dpop)\s+(?!\[REDACTED)[A-Za-z0-9._~+/-]+=*", re.IGNORECASE
)
# Follows SQLAlchemy's URL grammar, which lets an unencoded "/" into the password. The
# bound and the possessive "+" keep "http://http://..." from going quadratic.
_URL_USERINFO_RE: Final = re.compile(
    r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}://)([^\s:/?#@]*):([^\s@]{0,1024}+)@",
    re.IGNORECASE,
)
# ASCII digits only: other Unicode digits are not card numbers, and int() would accept
# them. A run may be split into groups by single spaces or dashes.
_DIGIT_RUN_RE: Final = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,}[0-9](?![0-9])")
_DIGIT_GROUP_SEP_RE: Final = re.compile(r"[ -]")
_LUHN_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# "name=value", "name: value", '"name": "value"', "name='value'" and query parameters
# ("&sig=..."); the name decides, by the same rule as for dict keys. Only the name is
# consumed, so pairs inside a harmless value ("next=/a?token=x") are still found, and
# a value is read only for a sensitive name, which keeps "a:a:a:..." linear.
_PAIR_NAME_RE: Final = re.compile(r"(?<![\w-])(?P<key>[\w-]+)[\"']?\s{0,8}[:=]\s{0,8}")
_PAIR_VALUE_RE: Final = re.compile(
    r"(?!(?:bearer|basic|dpop)\s+\[REDACTED)"
    r"(?:\"(?:[^\"\\]|\\.){0,1024}\"|'(?:[^'\\]|\\.){0,1024}'"
    # Also an unterminated quote, as in a truncated line.
    r"|(?:(?:bearer|basic|dpop)\s+)?[\"']?[^\s&,;\"'<>()\[\]{}]+)",
    re.IGNORECASE,
)


def _luhn_valid(digits: str) -> bool:
    total = sum(int(d) for d in digits[-1::-2])
    total += sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _find_card_number(groups: list[str]) -> str | None:
    """Return a Luhn-valid 13-19 digit card number formed by whole groups, if any."""
    for start in range(len(groups)):
        candidate = ""
        for group in groups[start:]:
            candidate += group
            if len(candidate) > 19:
                break
            if len(candidate) >= 13 and _luhn_valid(candidate):
                return candidate
    # No card number is longer than 19 digits, so a longer unbroken group is something
    # glued to one (PAN + CVV, PAN + expiry): look inside it.
    for group in (g for g in groups if len(g) > 19):
        for length in range(13, 20):
            for start in range(len(group) - length + 1):
                if _luhn_valid(group[start : start + length]):
                    return group[start : start + length]
    return None


def _mask_digit_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) > _MAX_DIGIT_RUN:
        return "****"
    groups = _DIGIT_GROUP_SEP_RE.split(run)
    card_number = _find_card_number(groups)
    if card_number is None:
        # Not a card number (order numbers, timestamps): keep it readable.
        return run
    # The whole run goes, so no digits of the card survive next to the mask.
    return "****" + card_number[-4:]


def _redact_pairs(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for name in _PAIR_NAME_RE.finditer(text):
        if name.start() < done or not is_sensitive_key(name.group("key")):
            continue
        value = _PAIR_VALUE_RE.match(text, name.end())
        if value is None:
            continue
        quoted = len(value.group()) > 1 and value.group()[0] == value.group()[-1] in "\"'"
        quote = value.group()[0] if quoted else ""
        pieces += [text[done : name.end()], quote, REDACTED, quote]
        done = value.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def redact_text(text: str) -> str:
    """Scrub secrets and card numbers out of free text; return ``text`` if none."""
    if len(text) < _MIN_TEXT_LEN:
        return text
    # Most logged strings repeat (event names, methods, route templates, ids of the
    # requests in flight): a pure function of the text, so short ones are remembered.
    if len(text) <= _REMEMBERED_TEXT_LEN:
        return _redact_remembered(text)
    return _redact_text(text)


_REMEMBERED_TEXT_LEN: Final = 200


@lru_cache(maxsize=8192)
def _redact_remembered(text: str) -> str:
    return _redact_text(text)


def _redact_text(text: str) -> str:
    # Order matters: whole tokens go before anything that could split them, and card
    # numbers before "name=value", whose value stops at the first space.
    # The substring checks skip most patterns for most strings (ids, paths, messages).
    result = text
    if "eyJ" in result:
        result = _JWT_RE.sub(_REDACTED_JWT, result)
    if "_" in result:
        result = _PROVIDER_KEY_RE.sub(REDACTED, result)
    result = _AUTH_SCHEME_RE.sub(rf"\g<1> {REDACTED}", result)
    if "://" in result:
        result = _URL_USERINFO_RE.sub(rf"\g<1>\g<2>:{REDACTED}@", result)
    result = _DIGIT_RUN_RE.sub(_mask_digit_run, result)
    if ":" in result or "=" in result:
        result = _redact_pairs(result)
    return text if result == text else result


# --- structured values ---------------------------------------------------------------

# Types that cannot hold a secret and that the renderers can show as they are.
_SAFE_TYPES: Final = (bool, float, datetime, date, time, timedelta, UUID, Decimal, Enum)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break the request
        return f"<unrepresentable {type(value).__name__}>"


def _redact_sensitive(value: object) -> object:
    # None and booleans say whether something is set, never what it is.
    return value if value is None or isinstance(value, bool) else REDACTED


def _redact_key(key: object) -> tuple[object, bool]:
    """Return the scrubbed key and whether it names a secret."""
    if isinstance(key, bytes | bytearray):
        key = key.decode("utf-8", "replace")
    if isinstance(key, str):
        return _redact_str_key(key)
    return key, False


@lru_cache(maxsize=4096)
def _redact_str_key(key: str) -> tuple[str, bool]:
    return redact_text(key), is_sensitive_key(key)


def _redact_mapping(mapping: Mapping[Any, Any], depth: int) -> Mapping[Any, Any]:
    changed = type(mapping) is not dict
    result: dict[Any, Any] = {}
    for key, value in mapping.items():
        new_key, sensitive = _redact_key(key)
        new_value = _redact_sensitive(value) if sensitive else _redact_value(value, depth + 1)
        changed = changed or new_key is not key or new_value is not value
        result[new_key] = new_value
    return result if changed else mapping


def _redact_sequence(items: list[Any] | tuple[Any, ...], depth: int) -> object:
    # A (name, value) pair is how ASGI and httpx carry headers: (b"authorization", ...).
    if type(items) is tuple and len(items) == 2 and isinstance(items[0], str | bytes):
        name, sensitive = _redact_key(items[0])
        if sensitive:
            return (name, _redact_sensitive(items[1]))
    redacted = [_redact_value(item, depth + 1) for item in items]
    if all(new is old for new, old in zip(redacted, items, strict=True)):
        return items
    return tuple(redacted) if isinstance(items, tuple) else redacted


def _redact_value(value: object, depth: int) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, _SAFE_TYPES):
        return value
    if isinstance(value, int):
        # Card numbers sometimes arrive as integers.
        if abs(value) < 10**12:
            return value
        text = str(value)
        redacted = redact_text(text)
        return value if redacted is text else redacted
    if depth >= _MAX_DEPTH:
        return redact_text(_safe_repr(value))
    if isinstance(value, Mapping):
        return _redact_mapping(value, depth)
    if isinstance(value, list | tuple):
        return _redact_sequence(value, depth)
    if isinstance(value, set | frozenset):
        # JSON has no sets; a list renders everywhere.
        return [_redact_value(item, depth + 1) for item in value]
    # bytes, exceptions, models, anything else: what a renderer would show, scrubbed.
    return redact_text(_safe_repr(value))


def redact_data(value: object) -> object:
    """``value`` with the log redaction applied at any depth (error reports, span attributes).

    It returns ``value`` itself when nothing needed scrubbing; it may raise on objects
    whose ``repr`` recurses without end (callers outside logging decide what to drop)."""
    return _redact_value(value, 0)


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor removing secrets from keys and values at any depth.

    Run it after every processor that adds content (exceptions included) and right
    before rendering. It never raises: if redaction itself fails, the event is replaced
    by a notice instead of being logged unredacted.
    """
    try:
        return cast(EventDict, _redact_mapping(event_dict, 0))
    except Exception:  # noqa: BLE001 - logging must never break the request
        return {
            "event": "log event dropped: redaction failed",
            "level": event_dict.get("level", method_name),
            "timestamp": event_dict.get("timestamp"),
        }


# --- rendering -----------------------------------------------------------------------

# C0/C1 controls (CR, LF, ESC, NEL, ...) and Unicode line separators, escaped so a value
# can neither forge a new log line nor drive the terminal (ASVS 16.4.1).
_CONTROL_ESCAPES: Final[dict[int, str]] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_BLOCK_KEYS: Final = frozenset({"exception", "stack"})
_BLOCK_PREFIX: Final = "  | "


def _escape_controls(text: str) -> str:
    return text if text.isprintable() else text.translate(_CONTROL_ESCAPES)


def _quote_block(text: str) -> str:
    # Tracebacks stay multi-line for readability, but every line is prefixed, so an
    # injected line in an exception message cannot pass for a log line of its own.
    return "\n".join(_BLOCK_PREFIX + _escape_controls(line) for line in text.split("\n"))


class _SafeConsoleRenderer:
    """structlog's ConsoleRenderer, with control characters escaped first.

    ConsoleRenderer prints the message and some other columns verbatim; JSON output
    needs no such step because the encoder escapes control characters itself.
    """

    def __init__(self, *, colors: bool) -> None:
        self._render = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        escaped: EventDict = {}
        for key, value in event_dict.items():
            if isinstance(value, str):
                value = _quote_block(value) if key in _BLOCK_KEYS else _escape_controls(value)
            escaped[_escape_controls(key) if isinstance(key, str) else key] = value
        return self._render(logger, method_name, escaped)


def _json_default(value: object) -> object:
    # Only reached for types redact_event lets through unchanged (see _SAFE_TYPES).
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID | Decimal | timedelta):
        return str(value)
    return repr(value)


# --- configuration -------------------------------------------------------------------


class _TillpayHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler we install, so reconfiguring replaces it."""


def _drop_formatter_meta(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    # ProcessorFormatter adds the LogRecord under these keys; redaction would only
    # waste time on them. Unlike remove_processors_meta, this may run twice.
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


# uvicorn gives these loggers handlers of their own and stops propagation; we want their
# lines to go through our formatter instead.
_ROUTED_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(*, json: bool, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library to log through redaction.

    ``json=True`` writes one JSON object per line (production, tests); ``json=False``
    writes coloured console lines for development. Lines go to ``stream`` (default
    ``sys.stdout``). Calling it again replaces the previous configuration.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level: {level!r}")
    output = sys.stdout if stream is None else stream

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer(default=_json_default)
    else:
        renderer = _SafeConsoleRenderer(colors=output.isatty())

    # Exceptions become text before redaction so that their messages are scrubbed too.
    # Our own events are redacted before they become a LogRecord, so any other handler
    # on the root logger (pytest's caplog, an error tracker) gets the redacted dict too.
    # The trace ids (when tracing is on) come after redaction: see add_trace_ids.
    final: list[Processor] = [structlog.processors.format_exc_info, redact_event, add_trace_ids]

    handler = _TillpayHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _drop_formatter_meta, *final],
            processors=[_drop_formatter_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TillpayHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *final,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__]),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers created at import time must follow a later reconfiguration
        # (tests capture output; `tillpay` reconfigures after importing modules).
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger; ``name`` defaults to the calling module's name."""
    if name is None:
        return structlog.stdlib.get_logger()
    return structlog.stdlib.get_logger(name)
