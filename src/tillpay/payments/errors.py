"""Errors of the payments domain."""

from __future__ import annotations

from tillpay.kit.errors import AppError, Conflict


class PaymentNotPossible(Conflict):
    code, title = "order_not_payable", "The order cannot be paid"


class RefundExceedsCaptured(Conflict):
    code, title = "refund_exceeds_captured", "Refund larger than what is refundable"


class RetryLater(AppError):
    """The event is ahead of our state or the provider is unreachable: try again later."""
