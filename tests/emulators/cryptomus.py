"""A wire-level Cryptomus emulator: an ASGI app speaking Cryptomus's merchant API.

What it does like Cryptomus (shapes from /work/shared/reference/samples/cryptomus-samples.json):

- every call is a JSON ``POST`` checked for ``merchant`` and
  ``sign = md5(base64(raw body) + payment key)`` over the exact bytes received; errors come
  back as ``{"state": 1, "message": ...}`` or ``{"state": 1, "errors": {...}}`` (HTTP 422);
- ``POST /v1/payment`` keeps invoices and answers a repeated ``order_id`` with the existing
  invoice; ``/v1/payment/info`` (by ``order_id`` when both are given), ``/v1/payment/refund``
  (by ``uuid`` when both are given; needs ``address`` and ``is_subtract``; whole invoice),
  ``/v1/payment/resend``;
- responses and webhooks are encoded as PHP writes JSON (``\\/`` for ``/``, raw unicode);
  webhooks carry ``sign`` in the body over the PHP encoding of the other fields, computed
  with an encoder written independently of the adapter's.

Test controls:

- ``POST /_control/invoices/{uuid}`` ``{"status": "paid" | "paid_over" | "wrong_amount" |
  "cancel" | ..., "payment_amount"?, "additional_data"?, "webhook": "send" | "twice" |
  "hold" | "none"}`` moves an invoice, as the payer (or the chain) would; :meth:`control`
  calls it over HTTP;
- :meth:`fail` sets the faults of tests/emulators/faults.py on API calls; they apply after
  the merchant/sign check (``timeout_after`` on ``/v1/payment``: the invoice exists, only the
  answer is lost), and an ``error`` answers ``{"message": "Server error, #1", ...}``;
- held webhooks are sent by :meth:`deliver_held` in order or reversed (out of order).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.faults import FaultInjection, Faults

API_HOST = "api.cryptomus.test"
PAY_HOST = "pay.cryptomus.test"
WEBHOOK_SOURCE_IP = "91.227.144.54"

# Payer-side conversion the emulator pretends to do: invoice currency → USDT.
RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08"), "GBP": Decimal("1.27")}
FINAL = {
    "paid",
    "paid_over",
    "wrong_amount",
    "cancel",
    "fail",
    "system_fail",
    "refund_paid",
    "refund_fail",
}
STATUSES = FINAL | {
    "check",
    "confirm_check",
    "process",
    "wrong_amount_waiting",
    "locked",
    "refund_process",
}
_ALPHA_DASH = re.compile(r"[A-Za-z0-9_-]+")
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_EIGHT = Decimal("0.00000001")


# ----------------------------------------------------------------------------- PHP JSON


def _php_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "/":
            out.append("\\/")
        elif char in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif code < 0x20 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def php_encode(value: Any) -> str:
    """``json_encode($value, JSON_UNESCAPED_UNICODE)`` as PHP 8 writes it (for the types
    Cryptomus sends: objects, lists, strings, ints, bools, null)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _php_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_php_string(k)}:{php_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(php_encode(v) for v in value) + "]"
    raise TypeError(f"the emulator does not encode {type(value).__name__}")


def md5_sign(data: bytes, key: str) -> str:
    """``md5(base64_encode($data) . $key)``."""
    return hashlib.md5(base64.b64encode(data) + key.encode()).hexdigest()  # noqa: S324


def _money(value: Decimal) -> str:
    return format(value.quantize(_EIGHT), "f")


# ----------------------------------------------------------------------------- state


@dataclass
class Invoice:
    uuid: str
    order_id: str
    amount: str
    currency: str
    url_callback: str | None
    lifetime: int
    created_at: datetime
    status: str = "check"
    payer_currency: str = "USDT"
    network: str = "tron"
    payment_amount: str | None = None
    additional_data: str | None = None
    txid: str | None = None
    sender: str | None = None
    refund_address: str | None = None
    refund_is_subtract: bool | None = None
    last_webhook: bytes | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def payer_amount(self) -> str:
        return _money(Decimal(self.amount) * RATES.get(self.currency, Decimal(1)))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def merchant_amount(self) -> str | None:
        if self.payment_amount is None:
            return None
        return _money(Decimal(self.payment_amount) * Decimal("0.98"))

    def commission(self) -> str | None:
        if self.payment_amount is None:
            return None
        return _money(Decimal(self.payment_amount) * Decimal("0.02"))

    def info(self) -> dict[str, Any]:
        """The ``result`` of /v1/payment and /v1/payment/info, in Cryptomus's field order."""
        return {
            "uuid": self.uuid,
            "order_id": self.order_id,
            "amount": self.amount,
            "payment_amount": self.payment_amount,
            "payer_amount": self.payer_amount,
            "discount_percent": None,
            "discount": "0.00000000",
            "payer_currency": self.payer_currency,
            "currency": self.currency,
            "comments": None,
            "merchant_amount": self.merchant_amount(),
            "network": self.network,
            "address": "TXhfYSWt2oKRrHAJVJeYRuit6ZzKuoEKXj",
            "from": self.sender,
            "txid": self.txid,
            "payment_status": self.status,
            "url": f"https://{PAY_HOST}/pay/{self.uuid}",
            "expired_at": int((self.created_at + timedelta(seconds=self.lifetime)).timestamp()),
            "status": self.status,
            "is_final": self.is_final,
            "additional_data": self.additional_data,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "updated_at": self.updated_at.isoformat(timespec="seconds"),
        }

    def webhook(self) -> dict[str, Any]:
        """A payment webhook's fields (before ``sign``), in the documented order."""
        return {
            "type": "payment",
            "uuid": self.uuid,
            "order_id": self.order_id,
            "amount": self.amount,
            "payment_amount": self.payment_amount,
            "payment_amount_usd": self.payment_amount,
            "merchant_amount": self.merchant_amount(),
            "commission": self.commission(),
            "is_final": self.is_final,
            "status": self.status,
            "from": self.sender,
            "wallet_address_uuid": None,
            "network": self.network,
            "currency": self.currency,
            "payer_currency": self.payer_currency,
            "payer_amount": self.payer_amount,
            "additional_data": self.additional_data,
            "txid": self.txid,
        }


Handler = Callable[["CryptomusEmulator", Request, dict[str, Any]], Awaitable[Response]]


def _api_call(handler: Handler) -> Callable[[CryptomusEmulator, Request], Awaitable[Response]]:
    """An API route: the merchant/sign check, then the request's fault, then ``handler``
    with the parsed body."""

    async def route(self: CryptomusEmulator, request: Request) -> Response:
        body, problem = await self._authenticated(request)
        if body is None:
            return problem
        fault = self.faults.take(request.method, request.url.path)
        if fault is None:
            return await handler(self, request, body)
        await fault.before()
        if fault.kind == "error":
            return fault.response(self._server_error)
        response = await handler(self, request, body)
        fault.after()
        return response

    return route


class CryptomusEmulator(FaultInjection):
    """The emulator app plus its state; see the module docstring."""

    def __init__(self, *, merchant: str, payment_key: str) -> None:
        self.merchant = merchant
        self.payment_key = payment_key
        self.invoices: dict[str, Invoice] = {}
        self.by_order: dict[str, str] = {}
        self.faults = Faults()
        self.held: list[tuple[str, bytes]] = []
        self.deliveries: list[tuple[dict[str, Any], int]] = []
        self.calls: list[tuple[str, bytes]] = []
        self.webhook_transport: httpx.AsyncBaseTransport | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/payment", self._create, methods=["POST"]),
                Route("/v1/payment/info", self._info, methods=["POST"]),
                Route("/v1/payment/refund", self._refund, methods=["POST"]),
                Route("/v1/payment/resend", self._resend, methods=["POST"]),
                Route("/_control/invoices/{uuid}", self._control, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------------- wiring

    def attach(self, tillpay_app: Any, *, source_ip: str = WEBHOOK_SOURCE_IP) -> None:
        """Serve ``API_HOST`` for tillpay's adapter and send webhooks to tillpay's app as
        if from ``source_ip``."""
        tillpay_app.state.provider_transport.mount(API_HOST, self.app)
        self.webhook_transport = httpx.ASGITransport(app=tillpay_app, client=(source_ip, 443))

    def invoice(self, order_id: str) -> Invoice:
        return self.invoices[self.by_order[order_id]]

    async def control(self, order_id: str, status: str, **body: Any) -> httpx.Response:
        """Call the control endpoint over HTTP, as a test harness outside the process would."""
        invoice = self.invoice(order_id)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=f"https://{API_HOST}"
        ) as client:
            return await client.post(
                f"/_control/invoices/{invoice.uuid}", json={"status": status, **body}
            )

    async def deliver_held(self, *, reverse: bool = False) -> list[int]:
        """Send the held webhooks (reversed: out of order); their HTTP statuses."""
        batch, self.held = self.held, []
        if reverse:
            batch.reverse()
        return [await self._post_webhook(url, body) for url, body in batch]

    # ------------------------------------------------------------------------- helpers

    def _answer(self, payload: Any, status: int = 200) -> Response:
        return Response(php_encode(payload), status_code=status, media_type="application/json")

    def _ok(self, result: Any) -> Response:
        return self._answer({"state": 0, "result": result})

    def _error(self, message: str, status: int = 422) -> Response:
        return self._answer({"state": 1, "message": message}, status)

    def _invalid(self, errors: dict[str, list[str]]) -> Response:
        return self._answer({"state": 1, "errors": errors}, 422)

    async def _authenticated(self, request: Request) -> tuple[dict[str, Any] | None, Response]:
        """The parsed body, or an error response, after the merchant/sign check."""
        raw = await request.body()
        self.calls.append((request.url.path, raw))
        merchant = request.headers.get("merchant")
        sign = request.headers.get("sign", "")
        if merchant != self.merchant:
            return None, self._answer({"message": "Merchant not found"}, 401)
        if not hmac.compare_digest(md5_sign(raw, self.payment_key), sign):
            return None, self._answer({"message": "Invalid Sign."}, 401)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return None, self._error("Invalid JSON", 400)
        if not isinstance(body, dict):
            return None, self._error("Invalid JSON", 400)
        return body, Response()

    def _server_error(self, status: int) -> Response:
        return self._answer({"message": "Server error, #1", "code": status, "error": None}, status)

    def _find(self, body: dict[str, Any], *, prefer: str) -> Invoice | Response | None:
        uuid, order_id = body.get("uuid"), body.get("order_id")
        if uuid is None and order_id is None:
            return self._invalid(
                {
                    "uuid": ["validation.required_without"],
                    "order_id": ["validation.required_without"],
                }
            )
        if (prefer == "order_id" and order_id is not None) or uuid is None:
            key = self.by_order.get(str(order_id))
            return self.invoices.get(key) if key else None
        return self.invoices.get(str(uuid))

    async def _post_webhook(self, url: str, body: bytes) -> int:
        assert self.webhook_transport is not None, "attach() the emulator first"
        async with httpx.AsyncClient(transport=self.webhook_transport) as client:
            response = await client.post(
                url, content=body, headers={"content-type": "application/json"}
            )
        self.deliveries.append((json.loads(body), response.status_code))
        return response.status_code

    def _signed_webhook(self, invoice: Invoice) -> bytes:
        data = invoice.webhook()
        data["sign"] = md5_sign(php_encode(data).encode(), self.payment_key)
        return php_encode(data).encode()

    async def _notify(self, invoice: Invoice, mode: str) -> None:
        if invoice.url_callback is None or mode == "none":
            return
        body = self._signed_webhook(invoice)
        invoice.last_webhook = body
        if mode == "hold":
            self.held.append((invoice.url_callback, body))
            return
        for _ in range(2 if mode == "twice" else 1):
            await self._post_webhook(invoice.url_callback, body)

    # ------------------------------------------------------------------------- API

    @_api_call
    async def _create(self, request: Request, body: dict[str, Any]) -> Response:
        errors: dict[str, list[str]] = {}
        for name in ("amount", "currency", "order_id"):
            if body.get(name) in (None, ""):
                errors[name] = ["validation.required"]
        amount, order_id = body.get("amount"), body.get("order_id")
        if isinstance(amount, str | int) and not _AMOUNT.fullmatch(str(amount)):
            errors["amount"] = ["validation.numeric"]
        if isinstance(order_id, str) and not (
            _ALPHA_DASH.fullmatch(order_id) and len(order_id) <= 128
        ):
            errors["order_id"] = ["validation.alpha_dash"]
        lifetime = body.get("lifetime", 3600)
        if not isinstance(lifetime, int) or not 300 <= lifetime <= 43200:
            errors["lifetime"] = ["validation.between.numeric"]
        for name in ("url_return", "url_success", "url_callback"):
            url = body.get(name)
            if url is not None and not (isinstance(url, str) and 6 <= len(url) <= 255):
                errors[name] = ["validation.url"]
        if errors:
            return self._invalid(errors)
        existing = self.by_order.get(str(order_id))
        if existing is None:
            if body["currency"] not in RATES:
                return self._error("The currency was not found")
            invoice = Invoice(
                uuid=str(uuidlib.uuid4()),
                order_id=str(order_id),
                amount=str(amount),
                currency=str(body["currency"]),
                url_callback=body.get("url_callback"),
                lifetime=lifetime,
                created_at=datetime.now(UTC),
            )
            self.invoices[invoice.uuid] = invoice
            self.by_order[invoice.order_id] = invoice.uuid
        else:
            invoice = self.invoices[existing]
        return self._ok(invoice.info())

    @_api_call
    async def _info(self, request: Request, body: dict[str, Any]) -> Response:
        found = self._find(body, prefer="order_id")
        if isinstance(found, Response):
            return found
        if found is None:
            return self._error("Payment was not found")
        return self._ok(found.info())

    @_api_call
    async def _refund(self, request: Request, body: dict[str, Any]) -> Response:
        errors: dict[str, list[str]] = {}
        address = body.get("address")
        if not isinstance(address, str) or not address:
            errors["address"] = ["validation.required"]
        is_subtract = body.get("is_subtract")
        if is_subtract not in (True, False, 1, 0, "1", "0"):
            errors["is_subtract"] = ["validation.boolean"]
        if errors:
            return self._invalid(errors)
        found = self._find(body, prefer="uuid")
        if isinstance(found, Response):
            return found
        if found is None:
            return self._error("Payment was not found")
        if found.status not in ("paid", "paid_over"):
            return self._error("The invoice cannot be refunded")
        found.refund_address = str(address)
        found.refund_is_subtract = is_subtract in (True, 1, "1")
        found.status = "refund_process"
        found.updated_at = datetime.now(UTC)
        await self._notify(found, "send")
        return self._ok([])

    @_api_call
    async def _resend(self, request: Request, body: dict[str, Any]) -> Response:
        found = self._find(body, prefer="uuid")
        if isinstance(found, Response):
            return found
        if found is None:
            return self._error("Payment was not found")
        if found.last_webhook is not None and found.url_callback is not None:
            await self._post_webhook(found.url_callback, found.last_webhook)
        return self._ok([])

    # ------------------------------------------------------------------------- control

    async def _control(self, request: Request) -> Response:
        invoice = self.invoices.get(request.path_params["uuid"])
        if invoice is None:
            return self._error("Payment was not found", 404)
        body = json.loads(await request.body())
        status = body["status"]
        if status not in STATUSES:
            return self._error(f"unknown status {status}", 400)
        payer = Decimal(invoice.payer_amount)
        default_paid = {
            "paid": payer,
            "paid_over": payer * Decimal("1.1"),
            "wrong_amount": payer / 2,
            "wrong_amount_waiting": payer / 2,
        }
        if "payment_amount" in body:
            invoice.payment_amount = body["payment_amount"]
        elif status in default_paid:
            invoice.payment_amount = _money(default_paid[status])
        if invoice.payment_amount is not None and invoice.txid is None:
            invoice.txid = secrets.token_hex(32)
            invoice.sender = "THgEWubVc8tPKXLJ4VZ5zbiiAK7AgqSeGH"
        if "additional_data" in body:
            invoice.additional_data = body["additional_data"]
        invoice.status = status
        invoice.updated_at = datetime.now(UTC)
        await self._notify(invoice, body.get("webhook", "send"))
        return self._ok(invoice.info())
