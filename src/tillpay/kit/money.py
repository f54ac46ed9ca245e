"""Money as integer minor units plus a currency code; no float ever touches an amount.

The exponent table is the single authority on how many minor-unit digits a currency has
(NGN 2, JPY 0, KWD 3). Fiat entries follow ISO 4217. Crypto entries use the asset's
native precision capped at 8 digits, so amounts stay far below ``MAX_AMOUNT``; finer
fractions (ETH's 18 digits) are not representable and are rejected, never rounded.

Provider quirks (Stripe's two-decimal representation of ISK/UGX, the trailing zero
Razorpay and Stripe demand for three-decimal currencies) are the adapters' business:
this module speaks ISO semantics only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import total_ordering
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import AfterValidator, Field, Strict
from pydantic_core import PydanticCustomError

__all__ = [
    "CRYPTO_EXPONENTS",
    "EXPONENTS",
    "FIAT_EXPONENTS",
    "MAX_AMOUNT",
    "MAX_QUANTITY",
    "AmountMinor",
    "AnyCurrencyCode",
    "CurrencyCode",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "MoneyError",
    "PositiveAmountMinor",
    "Quantity",
    "UnsupportedCurrencyError",
    "exponent",
    "from_minor",
    "is_crypto_currency",
    "is_fiat_currency",
    "is_supported_currency",
    "parse",
    "to_minor",
]

MAX_AMOUNT: Final = 2**53 - 1
"""Largest amount in minor units: the largest integer a JavaScript client holds exactly."""

MAX_QUANTITY: Final = 999
"""Largest quantity of one item a single request may ask for."""

MAX_CRYPTO_DIGITS: Final = 8


def _codes(text: str) -> list[str]:
    return text.split()


# ISO 4217 active currencies (minor units), excluding funds codes (CLF, COU, ...) and
# precious metals. ANG stays while providers still accept it after the XCG changeover.
_FIAT: dict[str, int] = {
    **dict.fromkeys(
        _codes(
            "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD "
            "BTN BWP BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
            "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD "
            "KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
            "MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
            "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB "
            "TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR ZMW "
            "ZWG"
        ),
        2,
    ),
    **dict.fromkeys(_codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"), 0),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
    "UYW": 4,
}

# Assets Cryptomus prices in: min(native decimals, MAX_CRYPTO_DIGITS).
_CRYPTO: dict[str, int] = {
    "BTC": 8,
    "ETH": 8,
    "USDT": 6,
    "USDC": 6,
    "TRX": 6,
    "LTC": 8,
    "BCH": 8,
    "DOGE": 8,
    "DASH": 8,
    "XMR": 8,
    "TON": 8,
    "SOL": 8,
    "BNB": 8,
    "DAI": 8,
    "POL": 8,
    "MATIC": 8,
    "SHIB": 8,
    "AVAX": 8,
    "XRP": 6,
}

FIAT_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(_FIAT)
CRYPTO_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(_CRYPTO)
EXPONENTS: Final[Mapping[str, int]] = MappingProxyType({**_FIAT, **_CRYPTO})

_FIAT_CODE_RE: Final = re.compile(r"[A-Z]{3}")
_ANY_CODE_RE: Final = re.compile(r"[A-Z][A-Z0-9]{2,4}")
# ASCII digits only: Decimal() would also accept "١٢", "1_000", " 1", "1e3", "NaN".
_AMOUNT_RE: Final = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
_MAX_AMOUNT_TEXT: Final = 40


class MoneyError(ValueError):
    """Base class for money errors; a ValueError so Pydantic validators turn it into a 422."""


class UnsupportedCurrencyError(MoneyError):
    """The currency code is malformed or not in the exponent table."""


class CurrencyMismatchError(MoneyError):
    """Arithmetic or comparison between two different currencies."""


class InvalidAmountError(MoneyError):
    """The amount is negative, too large, too precise, not finite or not a number."""


def is_supported_currency(code: object) -> bool:
    """True if ``code`` is an upper-case fiat or crypto code present in the exponent table."""
    return isinstance(code, str) and code in EXPONENTS


def is_fiat_currency(code: object) -> bool:
    """True if ``code`` is an upper-case ISO 4217 code present in the exponent table."""
    return isinstance(code, str) and code in FIAT_EXPONENTS


def is_crypto_currency(code: object) -> bool:
    """True if ``code`` is a crypto asset code present in the exponent table."""
    return isinstance(code, str) and code in CRYPTO_EXPONENTS


def exponent(currency: str) -> int:
    """Number of minor-unit digits of ``currency``; raises UnsupportedCurrencyError."""
    try:
        return EXPONENTS[currency]
    except (KeyError, TypeError):
        raise UnsupportedCurrencyError(f"unsupported currency: {currency!r}") from None


def _check_amount(amount: object) -> int:
    # bool is an int subclass; True must never mean one cent.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidAmountError(
            f"amount must be an int of minor units, got {type(amount).__name__}"
        )
    if amount < 0:
        raise InvalidAmountError("amount must not be negative")
    if amount > MAX_AMOUNT:
        raise InvalidAmountError(f"amount must not exceed {MAX_AMOUNT}")
    return amount


def from_minor(amount: int, currency: str) -> Decimal:
    """Exact decimal value of ``amount`` minor units, e.g. ``(1234, "USD") -> Decimal("12.34")``."""
    exp = exponent(currency)
    _check_amount(amount)
    return Decimal(amount).scaleb(-exp)


def to_minor(value: Decimal, currency: str) -> int:
    """Exact minor units of a Decimal; raises InvalidAmountError instead of ever rounding.

    Trailing zeros beyond the exponent are accepted (``Decimal("1.500")`` USD is 150);
    any non-zero digit beyond it is rejected.
    """
    exp = exponent(currency)
    if not isinstance(value, Decimal):
        raise InvalidAmountError(f"value must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise InvalidAmountError("amount must be a finite number")
    if value < 0:
        raise InvalidAmountError("amount must not be negative")
    # Exact comparison first, so that later powers of ten stay small.
    if value > Decimal(MAX_AMOUNT).scaleb(-exp):
        raise InvalidAmountError(f"amount exceeds the maximum for {currency}")
    _, digits, dexp = value.as_tuple()
    if not isinstance(dexp, int):  # unreachable for finite values; narrows the type
        raise InvalidAmountError("amount must be a finite number")
    coefficient = int("".join(map(str, digits)))
    if coefficient == 0:
        return 0
    shift = dexp + exp
    if shift >= 0:
        scale: int = 10**shift
        return coefficient * scale
    # A coefficient shorter than the shift is a non-zero fraction of one minor unit;
    # checking this first also keeps "1E-999999" from building a huge power of ten.
    if -shift > len(digits):
        raise InvalidAmountError(f"{currency} allows at most {exp} decimal places")
    divisor: int = 10**-shift
    minor, remainder = divmod(coefficient, divisor)
    if remainder:
        raise InvalidAmountError(f"{currency} allows at most {exp} decimal places")
    return minor


def parse(text: str, currency: str) -> Money:
    """Parse a plain decimal string such as ``"12.34"`` into Money, exactly.

    Accepted grammar: ASCII digits, optionally a dot and 1..exponent digits. Signs,
    exponents, grouping separators, whitespace, NaN and infinity are rejected.
    """
    exp = exponent(currency)
    if not isinstance(text, str) or len(text) > _MAX_AMOUNT_TEXT:
        raise InvalidAmountError("amount must be a short decimal string")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise InvalidAmountError(
            f"amount must be a plain decimal number like '12.34', got {text!r}"
        )
    frac = match["frac"]
    if frac is not None and len(frac) > exp:
        raise InvalidAmountError(f"{currency} allows at most {exp} decimal places")
    return Money(to_minor(Decimal(text), currency), currency)


@total_ordering
@dataclass(frozen=True, slots=True)
class Money:
    """A non-negative amount of minor units of one currency; immutable."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        exponent(self.currency)
        _check_amount(self.amount)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in ``currency``."""
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Same as the module-level :func:`parse`."""
        return parse(text, currency)

    @classmethod
    def from_decimal(cls, value: Decimal, currency: str) -> Money:
        """Money from an exact Decimal of major units (see :func:`to_minor`)."""
        return cls(to_minor(value, currency), currency)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str) -> Money:
        """Sum of ``items``, all in ``currency``; zero for no items."""
        result = cls.zero(currency)
        for item in items:
            result = result + item
        return result

    @property
    def exponent(self) -> int:
        """Minor-unit digits of this currency."""
        return EXPONENTS[self.currency]

    def is_zero(self) -> bool:
        """True if the amount is zero."""
        return self.amount == 0

    def to_decimal(self) -> Decimal:
        """Exact value in major units, e.g. ``Decimal("12.34")``."""
        return from_minor(self.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        if other.amount > self.amount:
            raise InvalidAmountError("subtraction would make the amount negative")
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, quantity: object) -> Money:
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            return NotImplemented
        if quantity < 0:
            raise InvalidAmountError("quantity must not be negative")
        return Money(self.amount * quantity, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount < other.amount

    def format(self, *, code: bool = True, grouping: bool = True) -> str:
        """Render as ``"NGN 1,234.50"``; ``code=False, grouping=False`` gives ``"1234.50"``."""
        exp = self.exponent
        major, minor = divmod(self.amount, 10**exp)
        text = f"{major:,}" if grouping else str(major)
        if exp:
            text = f"{text}.{minor:0{exp}d}"
        return f"{self.currency} {text}" if code else text

    def __str__(self) -> str:
        return self.format()


# --- Pydantic field types -------------------------------------------------------------
# Strict mode: JSON 10.0, "10" and true are errors, not silently coerced amounts.
# They are meant for JSON bodies; in query strings every value is a string and
# would be rejected.


def _fiat_code(value: str) -> str:
    if not _FIAT_CODE_RE.fullmatch(value):
        # Deliberately no upper-casing: "usd" is a client bug, and accepting several
        # spellings would let two requests for the same thing look different.
        raise PydanticCustomError(
            "currency_format", "currency must be 3 upper-case letters (ISO 4217), e.g. 'USD'"
        )
    if value not in FIAT_EXPONENTS:
        raise PydanticCustomError(
            "currency_unsupported", "currency {currency} is not supported", {"currency": value}
        )
    return value


def _any_code(value: str) -> str:
    if not _ANY_CODE_RE.fullmatch(value):
        raise PydanticCustomError(
            "currency_format",
            "currency must be 3-5 upper-case letters or digits, e.g. 'USD' or 'USDT'",
        )
    if value not in EXPONENTS:
        raise PydanticCustomError(
            "currency_unsupported", "currency {currency} is not supported", {"currency": value}
        )
    return value


AmountMinor = Annotated[
    int,
    Strict(),
    Field(
        ge=0,
        le=MAX_AMOUNT,
        description="Amount in the currency's minor unit (cents, kobo, paise; yen for JPY).",
        examples=[1999],
    ),
]
"""Non-negative integer amount in minor units, at most MAX_AMOUNT."""

PositiveAmountMinor = Annotated[
    int,
    Strict(),
    Field(
        ge=1,
        le=MAX_AMOUNT,
        description="Amount in the currency's minor unit; at least 1.",
        examples=[1999],
    ),
]
"""Integer amount in minor units, 1..MAX_AMOUNT."""

CurrencyCode = Annotated[
    str,
    Strict(),
    AfterValidator(_fiat_code),
    Field(
        description="ISO 4217 currency code in upper case.",
        examples=["USD"],
        json_schema_extra={"pattern": "^[A-Z]{3}$", "minLength": 3, "maxLength": 3},
    ),
]
"""A supported ISO 4217 code, exactly as sent: lower case is rejected, not normalised."""

AnyCurrencyCode = Annotated[
    str,
    Strict(),
    AfterValidator(_any_code),
    Field(
        description="Supported fiat (ISO 4217) or crypto asset code in upper case.",
        examples=["USDT"],
        json_schema_extra={"pattern": "^[A-Z][A-Z0-9]{2,4}$", "minLength": 3, "maxLength": 5},
    ),
]
"""A supported fiat or crypto code (e.g. for provider-side crypto amounts)."""

Quantity = Annotated[
    int,
    Strict(),
    Field(ge=1, le=MAX_QUANTITY, description="Number of units.", examples=[1]),
]
"""Strict integer quantity, 1..MAX_QUANTITY."""
