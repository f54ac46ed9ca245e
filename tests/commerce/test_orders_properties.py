"""Properties of the order state machine and of order totals (no HTTP, no database)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillpay.catalog.models import Product, Variant
from tillpay.catalog.pricing import TotalTooLarge
from tillpay.kit.errors import InvalidStateTransition
from tillpay.kit.money import EXPONENTS, MAX_AMOUNT, CurrencyMismatchError
from tillpay.orders.models import OrderStatus as S
from tillpay.orders.service import PricedLine, order_total
from tillpay.orders.state import TERMINAL, can_transition, check_transition

# The table as the issue and tillpay/orders/state.py document it, written out
# independently so that a change to TRANSITIONS has to be a deliberate one. A partially
# refunded order may be partially refunded again.
DOCUMENTED = {
    (S.PENDING_PAYMENT, S.PAID),
    (S.PENDING_PAYMENT, S.CANCELLED),
    (S.PENDING_PAYMENT, S.EXPIRED),
    (S.PAID, S.FULFILLED),
    (S.PAID, S.PARTIALLY_REFUNDED),
    (S.PAID, S.REFUNDED),
    (S.FULFILLED, S.PARTIALLY_REFUNDED),
    (S.FULFILLED, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}

statuses = st.sampled_from(list(S))


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    for current, target in itertools.product(S, repeat=2):
        allowed = (current, target) in DOCUMENTED
        assert can_transition(current, target) is allowed, (current, target)
        if not allowed:
            with pytest.raises(InvalidStateTransition) as refused:
                check_transition(current, target)
            assert (refused.value.status, refused.value.code) == (409, "invalid_state_transition")


def test_cancelled_expired_and_refunded_are_the_terminal_states() -> None:
    assert {S.CANCELLED, S.EXPIRED, S.REFUNDED} == TERMINAL


@given(st.lists(statuses, max_size=40))
def test_random_walks_follow_the_table_and_terminal_states_never_move(
    attempts: list[S],
) -> None:
    state = S.PENDING_PAYMENT
    for target in attempts:
        try:
            check_transition(state, target)
        except InvalidStateTransition:
            continue
        assert state not in TERMINAL, f"{state} moved to {target}"
        assert (state, target) in DOCUMENTED
        if target is S.PAID:
            assert state is S.PENDING_PAYMENT
        state = target


# ------------------------------------------------------------------------------- totals


def priced(price: int, quantity: int, currency: str = "USD") -> PricedLine:
    product = Product(title="p", currency=currency, active=True)
    variant = Variant(sku="s", price_amount=price, stock=quantity, active=True)
    return PricedLine(variant=variant, product=product, quantity=quantity)


lines = st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 999)), min_size=0, max_size=30)


@given(lines)
def test_order_total_is_the_exact_integer_sum(pairs: list[tuple[int, int]]) -> None:
    total = order_total([priced(p, q) for p, q in pairs], "USD")
    assert type(total.amount) is int
    assert total.amount == sum(p * q for p, q in pairs)
    assert total.currency == "USD"


def test_an_order_total_beyond_the_largest_amount_is_refused_not_rounded() -> None:
    with pytest.raises(TotalTooLarge):
        order_total([priced(MAX_AMOUNT, 1), priced(1, 1)], "USD")
    with pytest.raises(TotalTooLarge):
        order_total([priced(MAX_AMOUNT, 2)], "USD")


@given(
    st.lists(st.sampled_from(sorted(EXPONENTS)), min_size=2, max_size=4, unique=True),
    st.integers(0, 10**9),
)
def test_lines_in_mixed_currencies_cannot_be_totalled(currencies: list[str], price: int) -> None:
    mixed = [priced(price, 1, currency) for currency in currencies]
    with pytest.raises(CurrencyMismatchError):
        order_total(mixed, currencies[0])
    first, second = (line.unit_price for line in mixed[:2])
    with pytest.raises(CurrencyMismatchError):
        _ = first + second
