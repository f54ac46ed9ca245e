"""The sandbox's hosted checkout page: plain HTML under its own strict CSP, no scripts and
no third-party assets."""

from __future__ import annotations

import base64
import hashlib
import html

from fastapi.responses import HTMLResponse

from tillpay.kit.money import Money
from tillpay.sandbox.models import SandboxSession, SessionStatus

PAGE_CSP = (
    "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
    "color:#1b1f24}h1{font-size:1.3rem}.amount{font-size:2rem;margin:.5rem 0 1.5rem}"
    "label{display:block;margin:.8rem 0 .3rem}input{width:100%;padding:.6rem;font-size:1rem;"
    "box-sizing:border-box}button{margin-top:1.2rem;width:100%;padding:.8rem;font-size:1rem;"
    "background:#1a56db;color:#fff;border:0;border-radius:.3rem}.note{color:#57606a;"
    "font-size:.85rem}.result{padding:1rem;border-radius:.3rem;background:#f3f4f6}"
)


# How a closed checkout is described (session statuses are not English adjectives).
STATUS_SENTENCES: dict[SessionStatus, str] = {
    SessionStatus.SUCCEEDED: "This checkout has been paid.",
    SessionStatus.FAILED: "This checkout was declined.",
    SessionStatus.PROCESSING: "The payment for this checkout is being processed.",
    SessionStatus.EXPIRED: "This checkout has expired.",
}


def _closed_sentence(row: SandboxSession) -> str:
    status = SessionStatus.EXPIRED if row.status == SessionStatus.OPEN else row.status
    return STATUS_SENTENCES.get(status, "This checkout is closed.")


def _style_hash() -> str:
    return base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def _page(body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>tillpay sandbox checkout</title><style>{_STYLE}</style></head><body>{body}"
        "</body></html>"
    )
    response = HTMLResponse(document, status_code=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP.format(style_hash=_style_hash())
    response.headers["Cache-Control"] = "no-store"
    return response


def not_found() -> HTMLResponse:
    return _page("<h1>Checkout not found</h1>", status=404)


def closed(row: SandboxSession, *, status: int = 200) -> HTMLResponse:
    return _page(
        f"<h1>tillpay sandbox</h1><p class=result>{html.escape(_closed_sentence(row))}</p>",
        status=status,
    )


def checkout_form(row: SandboxSession) -> HTMLResponse:
    amount = html.escape(str(Money(row.amount, row.currency)))
    return _page(
        "<h1>tillpay sandbox checkout</h1>"
        f"<div class=amount>{amount}</div>"
        f"<form method=post action='/sandbox/checkout/{html.escape(row.id)}' autocomplete=off>"
        "<label for=card>Test card number</label>"
        "<input id=card name=card_number inputmode=numeric required "
        "placeholder='4242 4242 4242 4242' maxlength=23>"
        "<button type=submit>Pay</button></form>"
        "<p class=note>Sandbox only: no real card is charged. 4242… succeeds, 4000…0002 is "
        "declined, 4000…9995 has insufficient funds, 4000…0077 stays pending, 4000…0085 "
        "succeeds with a late, duplicated webhook.</p>"
    )
