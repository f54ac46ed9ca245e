"""Totals from catalog prices: the one money rule that carts and checkout share, so a cart
can only call itself ready when checkout would accept its total."""

from __future__ import annotations

from collections.abc import Iterable

from tillpay.kit.errors import Conflict
from tillpay.kit.money import InvalidAmountError, Money


class TotalTooLarge(Conflict):
    code, title = "total_too_large", "The order total is too large"


def line_total(unit_price: int, quantity: int, currency: str) -> Money:
    """``unit_price x quantity``; raises :class:`TotalTooLarge` above ``MAX_AMOUNT``."""
    try:
        return Money(unit_price, currency) * quantity
    except InvalidAmountError:
        raise _too_large() from None


def total(line_totals: Iterable[Money], currency: str) -> Money:
    """Sum of line totals (from :func:`line_total`), all in ``currency``
    (``CurrencyMismatchError`` otherwise); raises :class:`TotalTooLarge` when the sum
    exceeds ``MAX_AMOUNT``, although each price and quantity is in bounds."""
    try:
        return Money.total(line_totals, currency)
    except InvalidAmountError:
        raise _too_large() from None


def _too_large() -> TotalTooLarge:
    return TotalTooLarge(
        "The total exceeds the largest amount an order can carry; reduce the quantities."
    )
