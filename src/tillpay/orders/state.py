"""The order state machine as an explicit transition table.

    pending_payment → paid → fulfilled
    pending_payment → cancelled | expired
    paid → partially_refunded → refunded;  paid → refunded
    fulfilled → partially_refunded | refunded  (refunds after delivery)

Terminal states (cancelled, expired, refunded) have no way out.
"""

from __future__ import annotations

from tillpay.kit.errors import InvalidStateTransition
from tillpay.orders.models import OrderStatus

S = OrderStatus

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.CANCELLED, S.EXPIRED}),
    S.PAID: frozenset({S.FULFILLED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FULFILLED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REFUNDED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    """Raise 409 ``invalid_state_transition`` unless ``current → target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidStateTransition(
            f"An order that is {current.value} cannot become {target.value}.",
            extra={"from": current.value, "to": target.value},
        )
