"""The shopper's page after the provider, when the payment has no ``return_url``.

It tells the truth from the server-side state (the status was just synchronised with the
provider): paid, declined with the reason, still pending, or not completed. Styled inline
under a strict CSP (the style allowed by hash, nothing else).
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from typing import Final

from fastapi.responses import HTMLResponse

from tillpay.kit.money import Money
from tillpay.payments.models import Payment, PaymentStatus

_STYLE: Final = (
    "body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
    "color:#1b1f24}h1{font-size:1.4rem;margin:.2rem 0 .8rem}.card{padding:1.4rem;"
    "border-radius:.5rem;border:1px solid #d0d7de;border-left-width:.4rem}"
    ".paid{border-left-color:#1a7f37}.declined{border-left-color:#cf222e}"
    ".pending{border-left-color:#bf8700}.amount{font-size:1.6rem;margin:.3rem 0}"
    ".reason{font-weight:600}.note{color:#57606a;font-size:.9rem;margin-top:1rem}"
)
_CSP: Final = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

# Provider decline codes (normalised by the adapters) in words for the shopper.
DECLINE_REASONS: Final[dict[str, str]] = {
    "card_declined": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "processing_error": "The card could not be processed.",
    "unknown_test_card": "The card number is not a sandbox test card.",
}
GENERIC_DECLINE: Final = "The payment was not approved."


@dataclass(frozen=True)
class Outcome:
    css: str
    title: str
    message: str


def outcome(payment: Payment) -> Outcome:
    """What the shopper is told for ``payment``'s current status."""
    status = payment.status
    if status is PaymentStatus.SUCCEEDED:
        return Outcome("paid", "Payment received", "Thank you: your payment was received.")
    if status is PaymentStatus.FAILED:
        return Outcome("declined", "Payment declined", _decline_reason(payment))
    if status is PaymentStatus.CANCELED:
        return Outcome("declined", "Payment canceled", "The payment was canceled.")
    if status is PaymentStatus.EXPIRED:
        return Outcome("declined", "Checkout expired", "The checkout expired before payment.")
    if status is PaymentStatus.REQUIRES_ACTION:
        return Outcome(
            "pending",
            "Payment not completed",
            "The payment has not been completed. You have not been charged.",
        )
    # processing, unknown: the provider has not confirmed either way yet.
    return Outcome(
        "pending",
        "Payment pending",
        "The payment is being confirmed by the provider. The order is updated as soon as "
        "it is; you do not need to pay again.",
    )


def _decline_reason(payment: Payment) -> str:
    attempts = payment.attempts
    code = attempts[-1].error_code if attempts else None
    return DECLINE_REASONS.get(code or "", GENERIC_DECLINE)


def result_page(payment: Payment) -> HTMLResponse:
    result = outcome(payment)
    amount = html.escape(str(Money(payment.amount, payment.currency)))
    body = (
        f"<div class='card {result.css}'><h1>{html.escape(result.title)}</h1>"
        f"<div class=amount>{amount}</div>"
        f"<p class={'reason' if result.css == 'declined' else 'message'}>"
        f"{html.escape(result.message)}</p>"
        f"<p class=note>Payment reference {html.escape(payment.id)}. You can close this page.</p>"
        "</div>"
    )
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(result.title)} · tillpay</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    response = HTMLResponse(document)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    return response
