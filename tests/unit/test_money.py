from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tillpay.kit.money import (
    CRYPTO_EXPONENTS,
    EXPONENTS,
    FIAT_EXPONENTS,
    MAX_AMOUNT,
    MAX_QUANTITY,
    AmountMinor,
    AnyCurrencyCode,
    CurrencyCode,
    CurrencyMismatchError,
    InvalidAmountError,
    Money,
    PositiveAmountMinor,
    Quantity,
    UnsupportedCurrencyError,
    exponent,
    from_minor,
    is_crypto_currency,
    is_fiat_currency,
    is_supported_currency,
    parse,
    to_minor,
)

currencies = st.sampled_from(sorted(EXPONENTS))
amounts = st.integers(min_value=0, max_value=MAX_AMOUNT)
moneys = st.builds(Money, amounts, currencies)


def same_currency(n: int) -> st.SearchStrategy[list[Money]]:
    """n Money values of one currency whose sum stays within MAX_AMOUNT."""
    return currencies.flatmap(
        lambda cur: st.lists(
            st.integers(0, MAX_AMOUNT // n).map(lambda a: Money(a, cur)),
            min_size=n,
            max_size=n,
        )
    )


# --- exponent table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("NGN", 2),
        ("GHS", 2),
        ("INR", 2),
        ("HUF", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("VND", 0),
        ("UGX", 0),
        ("XOF", 0),
        ("XAF", 0),
        ("ISK", 0),
        ("RWF", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("JOD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("BTC", 8),
        ("ETH", 8),
        ("USDT", 6),
    ],
)
def test_exponent_matches_iso_4217_or_capped_crypto_precision(code: str, digits: int) -> None:
    assert exponent(code) == digits


def test_table_covers_every_currency_the_providers_list() -> None:
    required = [
        "USD",
        "EUR",
        "GBP",
        "NGN",
        "GHS",
        "ZAR",
        "KES",
        "INR",
        "JPY",
        "KRW",
        "KWD",
        "BHD",
        "JOD",
        "OMR",
        "TND",
        "CLP",
        "VND",
        "UGX",
        "XOF",
        "XAF",
        "ISK",
        "HUF",
        "CHF",
        "CAD",
        "AUD",
        "NZD",
        "SGD",
        "HKD",
        "AED",
        "SAR",
        "EGP",
        "RWF",
        "MXN",
        "BRL",
        "PLN",
        "SEK",
        "NOK",
        "DKK",
        "CZK",
        "TRY",
        "ILS",
        "MYR",
        "THB",
        "IDR",
        "PHP",
        "CNY",
        "TWD",
        "PKR",
        "BDT",
        "LKR",
        "NPR",
    ]
    assert [code for code in required if not is_fiat_currency(code)] == []
    crypto = ["USDT", "BTC", "ETH", "TRX", "LTC"]
    assert [code for code in crypto if not is_crypto_currency(code)] == []


def test_fiat_codes_are_three_upper_case_letters() -> None:
    assert all(len(c) == 3 and c.isascii() and c.isalpha() and c.isupper() for c in FIAT_EXPONENTS)


def test_crypto_codes_do_not_collide_with_fiat_and_are_capped_at_8_digits() -> None:
    assert set(CRYPTO_EXPONENTS).isdisjoint(FIAT_EXPONENTS)
    assert max(CRYPTO_EXPONENTS.values()) <= 8


def test_exponent_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        EXPONENTS["USD"] = 3  # type: ignore[index]


@pytest.mark.parametrize("code", ["usd", "XXX", "US", "USDD", "", None, 840])
def test_unknown_or_malformed_currency_is_unsupported(code: object) -> None:
    assert not is_supported_currency(code)
    with pytest.raises(UnsupportedCurrencyError):
        exponent(code)  # type: ignore[arg-type]


# --- Money ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(123450, "NGN"), "NGN 1,234.50"),
        (Money(500, "JPY"), "JPY 500"),
        (Money(1250, "KWD"), "KWD 1.250"),
        (Money(5, "USD"), "USD 0.05"),
        (Money(0, "USD"), "USD 0.00"),
        (Money(123456789, "JPY"), "JPY 123,456,789"),
    ],
)
def test_str_renders_code_grouped_major_units_and_all_minor_digits(money: Money, text: str) -> None:
    assert str(money) == text


def test_format_without_code_or_grouping_is_a_plain_decimal() -> None:
    assert Money(123450, "NGN").format(code=False, grouping=False) == "1234.50"


@pytest.mark.parametrize("amount", [-1, MAX_AMOUNT + 1, True, 1.0, Decimal(1), "1"])
def test_money_rejects_amounts_that_are_not_small_non_negative_ints(amount: object) -> None:
    with pytest.raises(InvalidAmountError):
        Money(amount, "USD")  # type: ignore[arg-type]


def test_money_rejects_unsupported_currency() -> None:
    with pytest.raises(UnsupportedCurrencyError):
        Money(1, "usd")


def test_money_is_immutable() -> None:
    money = Money(1, "USD")
    with pytest.raises(AttributeError):
        money.amount = 2  # type: ignore[misc]


def test_zero_is_zero_amount_in_the_currency() -> None:
    assert Money.zero("KWD") == Money(0, "KWD")
    assert Money.zero("KWD").is_zero()


def test_equal_amounts_in_different_currencies_are_not_equal() -> None:
    assert Money(100, "USD") != Money(100, "EUR")


@given(same_currency(2))
def test_addition_is_commutative(pair: list[Money]) -> None:
    a, b = pair
    assert a + b == b + a


@given(same_currency(3))
def test_addition_is_associative(triple: list[Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)


@given(same_currency(2))
def test_subtracting_what_was_added_gives_the_original(pair: list[Money]) -> None:
    a, b = pair
    assert (a + b) - b == a


@given(moneys, currencies)
def test_mixing_currencies_raises(money: Money, other_currency: str) -> None:
    assume(other_currency != money.currency)
    other = Money(1, other_currency)
    with pytest.raises(CurrencyMismatchError):
        money + other
    with pytest.raises(CurrencyMismatchError):
        money - other
    with pytest.raises(CurrencyMismatchError):
        _ = money < other


def test_subtraction_below_zero_raises() -> None:
    with pytest.raises(InvalidAmountError):
        Money(1, "USD") - Money(2, "USD")


def test_addition_beyond_max_amount_raises() -> None:
    with pytest.raises(InvalidAmountError):
        Money(MAX_AMOUNT, "USD") + Money(1, "USD")


def test_multiplying_by_a_quantity_scales_the_amount() -> None:
    assert Money(250, "USD") * 3 == Money(750, "USD")
    assert 3 * Money(250, "USD") == Money(750, "USD")


@pytest.mark.parametrize("factor", [1.5, Decimal(2), True, "2"])
def test_multiplying_by_anything_but_an_int_is_a_type_error(factor: object) -> None:
    with pytest.raises(TypeError):
        Money(250, "USD") * factor


def test_multiplying_by_a_negative_quantity_raises() -> None:
    with pytest.raises(InvalidAmountError):
        Money(250, "USD") * -1


def test_adding_a_plain_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money(1, "USD") + 1


def test_comparison_orders_by_amount_within_a_currency() -> None:
    assert Money(1, "USD") < Money(2, "USD") <= Money(2, "USD")
    assert Money(3, "USD") > Money(2, "USD") >= Money(2, "USD")


def test_total_sums_items_and_is_zero_when_empty() -> None:
    assert Money.total([Money(1, "EUR"), Money(2, "EUR")], "EUR") == Money(3, "EUR")
    assert Money.total([], "EUR") == Money.zero("EUR")


def test_total_rejects_items_in_another_currency() -> None:
    with pytest.raises(CurrencyMismatchError):
        Money.total([Money(1, "USD")], "EUR")


# --- parse / to_minor / from_minor ----------------------------------------------------


@given(moneys)
def test_parse_of_plain_format_round_trips(money: Money) -> None:
    assert parse(money.format(code=False, grouping=False), money.currency) == money


@given(moneys)
def test_from_decimal_of_to_decimal_round_trips(money: Money) -> None:
    assert Money.from_decimal(money.to_decimal(), money.currency) == money


@given(amounts, currencies)
def test_to_minor_of_from_minor_round_trips(amount: int, currency: str) -> None:
    assert to_minor(from_minor(amount, currency), currency) == amount


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("0.01", "USD", 1),
        ("500", "JPY", 500),
        ("1.25", "KWD", 1250),
        ("0.00000001", "BTC", 1),
        ("90071992547409.91", "USD", MAX_AMOUNT),
    ],
)
def test_parse_converts_decimal_text_to_exact_minor_units(
    text: str, currency: str, amount: int
) -> None:
    assert parse(text, currency) == Money(amount, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("12.345", "USD"),
        ("12.340", "USD"),
        ("1.5", "JPY"),
        ("1.", "USD"),
        (".5", "USD"),
        ("-1", "USD"),
        ("+1", "USD"),
        ("1e2", "USD"),
        ("1E2", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("inf", "USD"),
        ("1,000", "USD"),
        ("1_000", "USD"),
        (" 1", "USD"),
        ("1 ", "USD"),
        ("", "USD"),
        ("١٢", "USD"),
        ("90071992547409.92", "USD"),
        ("9" * 41, "USD"),
    ],
)
def test_parse_rejects_anything_but_a_plain_exact_decimal(text: str, currency: str) -> None:
    with pytest.raises(InvalidAmountError):
        parse(text, currency)


def test_parse_rejects_unsupported_currency() -> None:
    with pytest.raises(UnsupportedCurrencyError):
        parse("1.00", "usd")


def test_to_minor_accepts_trailing_zeros_beyond_the_exponent() -> None:
    assert to_minor(Decimal("15.43500000"), "USDT") == 15_435_000


@pytest.mark.parametrize(
    "value",
    ["0.001", "-0.01", "NaN", "sNaN", "Infinity", "-Infinity", "1E-999999", "1E+999999"],
)
def test_to_minor_rejects_inexact_negative_non_finite_and_huge_values(value: str) -> None:
    with pytest.raises(InvalidAmountError):
        to_minor(Decimal(value), "USD")


def test_to_minor_treats_zero_with_any_exponent_as_zero() -> None:
    assert to_minor(Decimal("0E+999999"), "USD") == 0


@pytest.mark.parametrize("value", [1.5, 1, "1.50"])
def test_to_minor_accepts_only_decimal(value: object) -> None:
    with pytest.raises(InvalidAmountError):
        to_minor(value, "USD")  # type: ignore[arg-type]


def test_from_minor_keeps_the_currency_scale() -> None:
    assert str(from_minor(1234, "USD")) == "12.34"
    assert str(from_minor(0, "KWD")) == "0.000"
    assert str(from_minor(500, "JPY")) == "500"


# --- Pydantic field types -------------------------------------------------------------


class Amounts(BaseModel):
    amount: AmountMinor


class PositiveAmounts(BaseModel):
    amount: PositiveAmountMinor


class Currencies(BaseModel):
    currency: CurrencyCode


class AnyCurrencies(BaseModel):
    currency: AnyCurrencyCode


class Quantities(BaseModel):
    quantity: Quantity


@pytest.mark.parametrize("value", [0, 1, MAX_AMOUNT])
def test_amount_minor_accepts_ints_in_range(value: int) -> None:
    assert Amounts(amount=value).amount == value


@pytest.mark.parametrize("value", [10.0, 10.5, "10", True, False, -1, MAX_AMOUNT + 1, None])
def test_amount_minor_rejects_floats_strings_bools_negatives_and_overflow(value: object) -> None:
    with pytest.raises(ValidationError):
        Amounts.model_validate({"amount": value})


@pytest.mark.parametrize(
    "body", ['{"amount": 10.0}', '{"amount": "10"}', '{"amount": true}', '{"amount": 1e3}']
)
def test_amount_minor_rejects_non_integers_in_json(body: str) -> None:
    with pytest.raises(ValidationError):
        Amounts.model_validate_json(body)


def test_amount_minor_publishes_bounds_and_an_example_in_json_schema() -> None:
    schema = Amounts.model_json_schema()["properties"]["amount"]
    assert schema["type"] == "integer"
    assert (schema["minimum"], schema["maximum"]) == (0, MAX_AMOUNT)
    assert schema["examples"]


def test_positive_amount_minor_rejects_zero_and_accepts_one() -> None:
    with pytest.raises(ValidationError):
        PositiveAmounts(amount=0)
    assert PositiveAmounts(amount=1).amount == 1


@pytest.mark.parametrize("value", ["USD", "NGN", "JPY", "KWD"])
def test_currency_code_accepts_supported_iso_codes(value: str) -> None:
    assert Currencies(currency=value).currency == value


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        ("usd", "currency_format"),
        ("Usd", "currency_format"),
        ("US", "currency_format"),
        ("USDD", "currency_format"),
        ("US1", "currency_format"),
        ("USDT", "currency_format"),
        ("XXX", "currency_unsupported"),
        ("ABC", "currency_unsupported"),
        (840, "string_type"),
    ],
)
def test_currency_code_rejects_lower_case_malformed_unknown_and_crypto(
    value: object, error_type: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Currencies.model_validate({"currency": value})
    assert info.value.errors()[0]["type"] == error_type


def test_any_currency_code_accepts_fiat_and_crypto_but_not_lower_case() -> None:
    assert AnyCurrencies(currency="USDT").currency == "USDT"
    assert AnyCurrencies(currency="EUR").currency == "EUR"
    with pytest.raises(ValidationError):
        AnyCurrencies(currency="usdt")


@pytest.mark.parametrize("value", [1, MAX_QUANTITY])
def test_quantity_accepts_one_to_cap(value: int) -> None:
    assert Quantities(quantity=value).quantity == value


@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, "2", True, MAX_QUANTITY + 1])
def test_quantity_rejects_non_positive_fractional_strings_and_above_cap(value: object) -> None:
    with pytest.raises(ValidationError):
        Quantities.model_validate({"quantity": value})
