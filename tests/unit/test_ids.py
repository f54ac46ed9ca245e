import re
import time
from datetime import UTC, datetime
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tillpay.kit.ids import (
    CROCKFORD_ALPHABET,
    ID_BODY_LENGTH,
    ID_COLUMN_LENGTH,
    MAX_ID_LENGTH,
    id_column_length,
    id_constraints,
    id_created_at,
    id_pattern,
    is_valid_id,
    new_id,
)

MAX_MS = (1 << 48) - 1
timestamps = st.integers(min_value=0, max_value=MAX_MS)


class Order(BaseModel):
    id: Annotated[str, id_constraints("ord")]


def body(value: str) -> str:
    return value.split("_", 1)[1]


def decode(crockford: str) -> int:
    number = 0
    for char in crockford:
        number = number * 32 + CROCKFORD_ALPHABET.index(char)
    return number


def test_new_id_is_prefix_underscore_and_26_crockford_characters() -> None:
    value = new_id("ord")
    assert value.startswith("ord_")
    assert len(body(value)) == ID_BODY_LENGTH
    assert set(body(value)) <= set(CROCKFORD_ALPHABET)


def test_crockford_alphabet_excludes_ambiguous_letters() -> None:
    assert len(CROCKFORD_ALPHABET) == 32
    assert not set("ILOU") & set(CROCKFORD_ALPHABET)


def test_new_ids_are_valid_for_their_prefix() -> None:
    assert is_valid_id(new_id("pay"), "pay")


def test_ten_thousand_ids_are_all_different() -> None:
    assert len({new_id("ord") for _ in range(10_000)}) == 10_000


@given(timestamps)
def test_the_first_ten_characters_encode_the_timestamp(ms: int) -> None:
    assert decode(body(new_id("ord", timestamp_ms=ms))[:10]) == ms


def test_ids_in_the_same_millisecond_differ() -> None:
    ids = {new_id("ord", timestamp_ms=1_700_000_000_000) for _ in range(1_000)}
    assert len(ids) == 1_000


def test_ids_in_the_same_millisecond_are_not_sequential() -> None:
    # Monotonic ULID generators would make the second random part the first one plus 1.
    first, second = (body(new_id("ord", timestamp_ms=0)) for _ in range(2))
    assert decode(second) - decode(first) != 1


@given(timestamps, timestamps)
def test_ids_from_a_later_millisecond_sort_later(t1: int, t2: int) -> None:
    a, b = new_id("ord", timestamp_ms=t1), new_id("ord", timestamp_ms=t2)
    if t1 < t2:
        assert a < b
    elif t1 > t2:
        assert a > b


def test_ids_created_over_time_sort_in_creation_order() -> None:
    created = []
    for _ in range(5):
        created.append(new_id("ord"))
        time.sleep(0.002)
    assert sorted(created) == created


def test_id_starts_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    value = body(new_id("ord"))
    after = time.time_ns() // 1_000_000
    assert before <= decode(value[:10]) <= after


@given(timestamps)
def test_every_possible_timestamp_gives_a_valid_id(ms: int) -> None:
    assert is_valid_id(new_id("ord", timestamp_ms=ms), "ord")


@pytest.mark.parametrize("ms", [-1, 1 << 48])
def test_timestamps_outside_48_bits_are_rejected(ms: int) -> None:
    with pytest.raises(ValueError):
        new_id("ord", timestamp_ms=ms)


@pytest.mark.parametrize("prefix", ["ab", "ord", "abcdefgh"])
def test_prefixes_of_two_to_eight_lower_case_letters_are_accepted(prefix: str) -> None:
    assert new_id(prefix).startswith(f"{prefix}_")


@pytest.mark.parametrize("prefix", ["", "a", "abcdefghi", "Ord", "ORD", "or_d", "or1", "ördr"])
def test_invalid_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(ValueError):
        new_id(prefix)
    with pytest.raises(ValueError):
        is_valid_id("x", prefix)


def test_id_column_length_is_exact_and_fits_the_suggested_column() -> None:
    assert id_column_length("ord") == len(new_id("ord")) == 30
    assert id_column_length("abcdefgh") == MAX_ID_LENGTH <= ID_COLUMN_LENGTH


def make_invalid(valid: str) -> list[str]:
    return (
        [
            new_id("pay"),  # wrong prefix
            valid[:-1],  # too short
            valid + "0",  # too long
            valid.lower(),  # body in lower case
            "ORD" + valid[3:],  # prefix in upper case
            valid.replace("_", "-"),  # wrong separator
            valid[:4] + "8" + valid[5:],  # first body character above 7: more than 128 bits
            f"{valid}\n",
            "ord_' OR '1'='1' --                ",
            "ord_" + "1" * 25 + "%",
            "",
        ]
        + [valid[:-1] + letter for letter in "ILOU"]
    )


def test_is_valid_id_rejects_malformed_ids() -> None:
    valid = new_id("ord", timestamp_ms=1_700_000_000_000)
    assert is_valid_id(valid, "ord")
    assert [bad for bad in make_invalid(valid) if is_valid_id(bad, "ord")] == []


@pytest.mark.parametrize("value", [None, 123, b"ord_01HZZZZZZZZZZZZZZZZZZZZZZZ"])
def test_is_valid_id_rejects_non_strings(value: object) -> None:
    assert not is_valid_id(value, "ord")


def test_id_pattern_matches_exactly_the_valid_ids() -> None:
    valid = new_id("ord")
    pattern = re.compile(id_pattern("ord"))
    assert pattern.fullmatch(valid)
    assert [bad for bad in make_invalid(valid) if pattern.fullmatch(bad)] == []


def test_id_constraints_accept_a_valid_id_in_a_model() -> None:
    valid = new_id("ord")
    assert Order(id=valid).id == valid


def test_id_constraints_reject_malformed_ids_in_a_model() -> None:
    valid = new_id("ord")
    for bad in make_invalid(valid):
        with pytest.raises(ValidationError):
            Order(id=bad)


def test_id_constraints_publish_the_pattern_in_json_schema() -> None:
    schema = Order.model_json_schema()["properties"]["id"]
    assert schema["pattern"] == id_pattern("ord")
    assert schema["minLength"] == schema["maxLength"] == 30


def test_the_creation_time_is_read_back_from_an_id() -> None:
    ms = 1_796_156_941_029
    created = id_created_at(new_id("rfd", timestamp_ms=ms))
    assert created == datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.mark.parametrize("value", ["", "rfd", "rfd_short", "rfd_" + "U" * 26, "rfd_" + "8" * 26])
def test_strings_that_are_not_ids_have_no_creation_time(value: str) -> None:
    assert id_created_at(value) is None
