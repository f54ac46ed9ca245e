"""Payment, attempt and refund state tables.

``succeeded`` is absorbing: nothing moves a succeeded payment. ``failed``, ``canceled``
and ``expired`` are final too, with one exception the provider must confirm through its
API: a late success (money moved after all), which also flags the payment for review.
"""

from __future__ import annotations

from tillpay.payments.models import PaymentStatus as P
from tillpay.payments.models import RefundStatus as R

OPEN = frozenset({P.REQUIRES_ACTION, P.PROCESSING, P.UNKNOWN})
FINAL = frozenset({P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED})
FAILED_FINAL = frozenset({P.FAILED, P.CANCELED, P.EXPIRED})

TRANSITIONS: dict[P, frozenset[P]] = {
    P.UNKNOWN: frozenset(
        {P.REQUIRES_ACTION, P.PROCESSING, P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED}
    ),
    P.REQUIRES_ACTION: frozenset(
        {P.PROCESSING, P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED, P.UNKNOWN}
    ),
    P.PROCESSING: frozenset(
        {P.REQUIRES_ACTION, P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED, P.UNKNOWN}
    ),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELED: frozenset(),
    P.EXPIRED: frozenset(),
}

REFUND_TRANSITIONS: dict[R, frozenset[R]] = {
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED, R.UNKNOWN}),
    R.UNKNOWN: frozenset({R.SUCCEEDED, R.FAILED, R.PENDING}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
}


def can_move(current: P, target: P, *, confirmed_by_provider: bool = False) -> bool:
    """Whether ``current → target`` is allowed (``late success`` needs provider proof)."""
    if target in TRANSITIONS[current]:
        return True
    return current in FAILED_FINAL and target is P.SUCCEEDED and confirmed_by_provider


def can_move_refund(current: R, target: R) -> bool:
    return target in REFUND_TRANSITIONS[current]
