"""A wire-level Razorpay emulator: an ASGI app speaking Razorpay's REST API.

What it does like Razorpay (entity shapes from /work/shared/reference/samples/
razorpay-samples.json, i.e. razorpay/markdown-docs and razorpay-python's mocks):

- JSON API under ``/v1`` behind HTTP Basic ``key_id:key_secret``; every error is
  ``{"error": {"code": "BAD_REQUEST_ERROR", "description", "source", "step", "reason",
  "metadata"}}`` (401 for bad credentials, 400 for validation and unknown ids);
- ``POST /v1/orders`` (``amount`` in sub-units, at least INR 1.00, three-decimal currencies
  ending in 0, ``receipt`` ≤ 40 characters, ``notes`` ≤ 15 pairs), ``GET /v1/orders``
  (``receipt``, ``count``, ``skip`` filters), ``GET /v1/orders/{id}``,
  ``GET /v1/orders/{id}/payments``, ``GET /v1/payments/{id}``,
  ``POST /v1/payments/{id}/capture``;
- ``POST /v1/payments/{id}/refund`` with ``X-Refund-Idempotency`` (≥ 10 characters of
  ``[A-Za-z0-9_-]``; the same key and body answers with the first refund, a different body
  is refused), ``GET /v1/refunds/{id}``, ``GET /v1/payments/{id}/refunds/{refund_id}``;
- webhooks: compact JSON events signed with ``X-Razorpay-Signature`` = hex
  HMAC-SHA256(raw body, webhook secret), with a fresh ``X-Razorpay-Event-Id`` per event
  (the same id on a redelivery), for the subscribed events ``payment.captured``,
  ``payment.failed``, ``order.paid``, ``refund.processed`` and ``refund.failed``.

Test controls (over HTTP on the same app, no auth, like the payer's browser or the bank):

- ``POST /_emulator/orders/{order_id}/pay`` ``{"card"?, "amount"?, "currency"?,
  "outcome"?}``: the payer pays in Checkout. A success answers what Checkout hands the
  page (``razorpay_order_id``, ``razorpay_payment_id``, ``razorpay_signature``); a decline
  (the failure test cards of providers.md §4.6, or ``"outcome": "failed"``) answers 400 with
  Checkout's error object. ``amount``/``currency`` let a test make a misbehaving payment;
  ``"outcome": "authorized"`` leaves the payment uncaptured;
- ``POST /_emulator/payments/{payment_id}/capture`` captures later (e.g. a ``failed``
  payment authorised late, as Razorpay documents);
- ``POST /_emulator/refunds/{refund_id}/settle`` ``{"status": "processed" | "failed"}``
  finishes a pending refund (set :attr:`RazorpayEmulator.refund_outcome` to ``"pending"``).

Events wait in :attr:`RazorpayEmulator.outbox` until :meth:`RazorpayEmulator.deliver`
posts them (in order, reversed, or each twice). :meth:`RazorpayEmulator.fail` sets the faults
of tests/emulators/faults.py on ``/v1`` calls: they apply after the call is recorded and
before authentication, and an ``error`` answers Razorpay's ``SERVER_ERROR`` object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.emulators.faults import FaultInjection, Faults

API_HOST = "api.razorpay.test"
API_BASE = f"https://{API_HOST}"
ACCOUNT_ID = "acc_TillpayEmulat0"
SUBSCRIBED = frozenset(
    {"payment.captured", "payment.failed", "order.paid", "refund.processed", "refund.failed"}
)
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# providers.md §4.6: success cards, and the failure cards with their error reasons.
GOOD_CARD = "4100 2800 0000 1007"
CARD_NETWORKS = {"4": "Visa", "5": "MasterCard", "6": "RuPay", "3": "Amex"}
FAILING_CARDS = {
    "4100280000080001": "insufficient_funds",
    "5305620000050001": "insufficient_funds",
    "4100280000090000": "payment_timed_out",
    "4100280000060003": "card_declined",
    "5305620000030003": "card_declined",
    "4100280000000009": "authentication_failed",
    "4100280000020007": "gateway_technical_error",
}
DECLINED_CARD = "4100 2800 0006 0003"
INSUFFICIENT_FUNDS_CARD = "4100 2800 0008 0001"

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,}")
_ALPHABET = string.ascii_letters + string.digits


def _rid(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(14))


def sign(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256, as Razorpay signs webhooks and Checkout responses."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _error(
    status: int,
    description: str,
    *,
    code: str = "BAD_REQUEST_ERROR",
    field_name: str | None = None,
    source: str = "business",
    step: str = "payment_initiation",
    reason: str = "input_validation_failed",
    metadata: dict[str, Any] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {
        "code": code,
        "description": description,
        "source": source,
        "step": step,
        "reason": reason,
        "metadata": metadata or {},
    }
    if field_name is not None:
        error["field"] = field_name
    return JSONResponse({"error": error}, status_code=status)


def _server_error(status: int) -> JSONResponse:
    return _error(
        status,
        "The server is temporarily unavailable",
        code="SERVER_ERROR",
        source="NA",
        step="NA",
        reason="NA",
    )


def _not_found() -> JSONResponse:
    return _error(400, "The id provided does not exist")


def _digits(card: str) -> str:
    return re.sub(r"\D", "", card)


@dataclass
class QueuedEvent:
    event_id: str
    name: str
    body: bytes
    deliveries: int = 0


@dataclass
class RazorpayEmulator(FaultInjection):
    """Razorpay's API for one merchant account; see the module docstring."""

    key_id: str
    key_secret: str
    webhook_secret: str
    webhook_url: str = "/v1/webhooks/razorpay"
    refund_outcome: Literal["processed", "pending"] = "processed"
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[QueuedEvent] = field(default_factory=list)
    # API calls received, as "METHOD /path?query" (controls are not listed).
    calls: list[str] = field(default_factory=list)
    webhook_client: httpx.AsyncClient | None = None
    faults: Faults = field(default_factory=Faults)
    _idempotency: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._api = Starlette(
            routes=[
                Route("/v1/orders", self._create_order, methods=["POST"]),
                Route("/v1/orders", self._list_orders, methods=["GET"]),
                Route("/v1/orders/{order_id}", self._get_order, methods=["GET"]),
                Route("/v1/orders/{order_id}/payments", self._order_payments, methods=["GET"]),
                Route("/v1/payments/{payment_id}", self._get_payment, methods=["GET"]),
                Route("/v1/payments/{payment_id}/capture", self._capture, methods=["POST"]),
                Route("/v1/payments/{payment_id}/refund", self._refund, methods=["POST"]),
                Route(
                    "/v1/payments/{payment_id}/refunds/{refund_id}",
                    self._get_payment_refund,
                    methods=["GET"],
                ),
                Route("/v1/refunds/{refund_id}", self._get_refund, methods=["GET"]),
                Route("/_emulator/orders/{order_id}/pay", self._control_pay, methods=["POST"]),
                Route(
                    "/_emulator/payments/{payment_id}/capture",
                    self._control_capture,
                    methods=["POST"],
                ),
                Route(
                    "/_emulator/refunds/{refund_id}/settle",
                    self._control_settle,
                    methods=["POST"],
                ),
            ]
        )

    # ------------------------------------------------------------------------- ASGI entry

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app to mount on :data:`API_HOST`: faults, then auth, then the API."""
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self._api(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        self.calls.append(f"{scope['method']} {path}" + (f"?{query}" if query else ""))
        await self.faults.serve(self._authorised_api, scope, receive, send, error=_server_error)

    async def _authorised_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorised(scope):
            response = _error(
                401, "The api key provided is invalid", source="NA", step="NA", reason="NA"
            )
            await response(scope, receive, send)
            return
        await self._api(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key_id, _, key_secret = base64.b64decode(token).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(key_id, self.key_id) and hmac.compare_digest(
            key_secret, self.key_secret
        )

    # ------------------------------------------------------------------------- test controls

    def _control(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=API_BASE)

    async def pay(self, order_id: str, **body: Any) -> httpx.Response:
        """The payer pays ``order_id`` in Checkout (see the module docstring)."""
        async with self._control() as control:
            return await control.post(f"/_emulator/orders/{order_id}/pay", json=body)

    async def capture_late(self, payment_id: str) -> httpx.Response:
        async with self._control() as control:
            return await control.post(f"/_emulator/payments/{payment_id}/capture")

    async def settle_refund(self, refund_id: str, status: str) -> httpx.Response:
        async with self._control() as control:
            return await control.post(
                f"/_emulator/refunds/{refund_id}/settle", json={"status": status}
            )

    def headers_for(
        self, body: bytes, *, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        """The headers Razorpay sends with ``body`` (signed with ``secret``, default ours)."""
        return {
            "content-type": "application/json",
            "x-razorpay-signature": sign(secret or self.webhook_secret, body),
            "x-razorpay-event-id": event_id or _rid("evt")[4:],
        }

    async def deliver(
        self, *, twice: bool = False, reverse: bool = False, keep: bool = False
    ) -> list[httpx.Response]:
        """Post the queued events to tillpay, as Razorpay's webhook sender would."""
        if self.webhook_client is None:
            raise RuntimeError("set webhook_client to a client of the tillpay app")
        events = list(reversed(self.outbox)) if reverse else list(self.outbox)
        if not keep:
            self.outbox.clear()
        responses = []
        for event in events:
            for _ in range(2 if twice else 1):
                event.deliveries += 1
                responses.append(
                    await self.webhook_client.post(
                        self.webhook_url,
                        content=event.body,
                        headers=self.headers_for(event.body, event_id=event.event_id),
                    )
                )
        return responses

    # ------------------------------------------------------------------------- state

    def _emit(self, name: str, **entities: dict[str, Any]) -> None:
        if name not in SUBSCRIBED:
            return
        event = {
            "entity": "event",
            "account_id": ACCOUNT_ID,
            "event": name,
            "contains": list(entities),
            "payload": {kind: {"entity": dict(entity)} for kind, entity in entities.items()},
            "created_at": int(time.time()),
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        self.outbox.append(QueuedEvent(event_id=_rid("evt")[4:], name=name, body=body))

    def _capture_payment(self, payment: dict[str, Any]) -> None:
        order = self.orders[payment["order_id"]]
        payment.update(status="captured", captured=True, fee=2, tax=0)
        for key in ("error_code", "error_description", "error_source", "error_step"):
            payment[key] = None
        payment["error_reason"] = None
        order["amount_paid"] += payment["amount"]
        order["amount_due"] = max(0, order["amount"] - order["amount_paid"])
        self._emit("payment.captured", payment=payment)
        if order["amount_paid"] >= order["amount"] and order["status"] != "paid":
            order["status"] = "paid"
            self._emit("order.paid", payment=payment, order=order)

    # ------------------------------------------------------------------------- orders API

    @staticmethod
    async def _body(request: Request) -> dict[str, Any] | None:
        try:
            data = await request.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _create_order(self, request: Request) -> Response:
        data = await self._body(request)
        if data is None:
            return _error(400, "The request body is not valid JSON")
        amount, currency = data.get("amount"), data.get("currency")
        if not isinstance(amount, int) or isinstance(amount, bool):
            return _error(400, "The amount must be an integer.", field_name="amount")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            return _error(400, "The currency field is invalid.", field_name="currency")
        if currency == "INR" and amount < 100:
            return _error(400, "The amount must be at least INR 1.00", field_name="amount")
        if amount < 1:
            return _error(400, "The amount must be at least 1.", field_name="amount")
        if currency in THREE_DECIMAL and amount % 10:
            return _error(
                400, "The last digit of the amount must be 0 for " + currency, field_name="amount"
            )
        receipt = data.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            return _error(
                400, "The receipt may not be greater than 40 characters.", field_name="receipt"
            )
        notes = data.get("notes", [])
        if notes and (
            not isinstance(notes, dict)
            or len(notes) > 15
            or any(len(str(v)) > 256 for v in notes.values())
        ):
            return _error(400, "The notes field is invalid.", field_name="notes")
        order: dict[str, Any] = {
            "id": _rid("order"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes or [],
            "created_at": int(time.time()),
        }
        self.orders[order["id"]] = order
        return JSONResponse(order)

    async def _list_orders(self, request: Request) -> Response:
        items = sorted(self.orders.values(), key=lambda o: o["created_at"], reverse=True)
        receipt = request.query_params.get("receipt")
        if receipt is not None:
            items = [o for o in items if o["receipt"] == receipt]
        try:
            count = min(100, int(request.query_params.get("count", "10")))
            skip = int(request.query_params.get("skip", "0"))
        except ValueError:
            return _error(400, "The count must be an integer.", field_name="count")
        page = items[skip : skip + count]
        return JSONResponse({"entity": "collection", "count": len(page), "items": page})

    async def _get_order(self, request: Request) -> Response:
        order = self.orders.get(request.path_params["order_id"])
        return JSONResponse(order) if order is not None else _not_found()

    async def _order_payments(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        if order_id not in self.orders:
            return _not_found()
        items = [p for p in self.payments.values() if p["order_id"] == order_id]
        return JSONResponse({"entity": "collection", "count": len(items), "items": items})

    async def _get_payment(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["payment_id"])
        return JSONResponse(payment) if payment is not None else _not_found()

    async def _capture(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _not_found()
        data = await self._body(request) or {}
        if payment["status"] != "authorized":
            return _error(
                400, "This payment has already been captured", reason="payment_already_captured"
            )
        if data.get("amount") != payment["amount"] or data.get("currency") != payment["currency"]:
            return _error(400, "Capture amount must be equal to the amount authorized")
        self._capture_payment(payment)
        return JSONResponse(payment)

    # ------------------------------------------------------------------------- refunds API

    async def _refund(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _not_found()
        raw = await request.body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return _error(400, "The request body is not valid JSON")
        if not isinstance(data, dict):
            return _error(400, "The request body is not valid JSON")
        key = request.headers.get("x-refund-idempotency")
        fingerprint = json.dumps(data, sort_keys=True)
        if key is not None:
            if not _IDEMPOTENCY_KEY.fullmatch(key):
                return _error(400, "The idempotency key is invalid.")
            seen = self._idempotency.get(key)
            if seen is not None:
                payment_id, seen_fingerprint, refund_id = seen
                if (payment_id, seen_fingerprint) != (payment["id"], fingerprint):
                    return _error(
                        400,
                        "Different request with the same idempotency key has already "
                        "been processed",
                    )
                return JSONResponse(self.refunds[refund_id])
        if not payment["captured"]:
            return _error(400, "The payment has not been captured")
        remaining = payment["amount"] - payment["amount_refunded"]
        amount = data.get("amount", remaining)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
            return _error(400, "The amount must be at least INR 1.00", field_name="amount")
        if amount > remaining:
            return _error(
                400,
                "The refund amount provided is greater than amount captured",
                field_name="amount",
            )
        speed = data.get("speed", "normal")
        refund = {
            "id": _rid("rfnd"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": data.get("notes") or [],
            "receipt": data.get("receipt"),
            "acquirer_data": {"arn": None},
            "created_at": int(time.time()),
            "batch_id": None,
            "status": "pending",
            "speed_processed": "normal",
            "speed_requested": speed,
        }
        self.refunds[refund["id"]] = refund
        if key is not None:
            self._idempotency[key] = (payment["id"], fingerprint, refund["id"])
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] >= payment["amount"]
        payment["refund_status"] = "full" if full else "partial"
        if full:
            payment["status"] = "refunded"
        if self.refund_outcome == "processed":
            self._settle(refund, "processed")
        return JSONResponse(refund)

    def _settle(self, refund: dict[str, Any], status: str) -> None:
        payment = self.payments[refund["payment_id"]]
        refund["status"] = status
        if status == "processed":
            refund["acquirer_data"] = {
                "arn": "".join(secrets.choice(string.digits) for _ in range(23))
            }
        else:
            payment["amount_refunded"] -= refund["amount"]
            payment["refund_status"] = "partial" if payment["amount_refunded"] else None
            if payment["status"] == "refunded":
                payment["status"] = "captured"
        self._emit(f"refund.{status}", refund=refund, payment=payment)

    async def _get_refund(self, request: Request) -> Response:
        refund = self.refunds.get(request.path_params["refund_id"])
        return JSONResponse(refund) if refund is not None else _not_found()

    async def _get_payment_refund(self, request: Request) -> Response:
        refund = self.refunds.get(request.path_params["refund_id"])
        if refund is None or refund["payment_id"] != request.path_params["payment_id"]:
            return _not_found()
        return JSONResponse(refund)

    # ------------------------------------------------------------------------- controls

    async def _control_pay(self, request: Request) -> Response:
        order = self.orders.get(request.path_params["order_id"])
        if order is None:
            return _not_found()
        data = await self._body(request) or {}
        card = _digits(str(data.get("card", GOOD_CARD)))
        outcome = data.get("outcome") or ("failed" if card in FAILING_CARDS else "captured")
        payment: dict[str, Any] = {
            "id": _rid("pay"),
            "entity": "payment",
            "amount": data.get("amount", order["amount"]),
            "currency": data.get("currency", order["currency"]),
            "status": "authorized",
            "order_id": order["id"],
            "invoice_id": None,
            "international": False,
            "method": "card",
            "amount_refunded": 0,
            "amount_transferred": 0,
            "refund_status": None,
            "captured": False,
            "description": None,
            "card_id": _rid("card"),
            "card": {
                "entity": "card",
                "name": "Gaurav Kumar",
                "last4": card[-4:],
                "network": CARD_NETWORKS.get(card[:1], "Visa"),
                "type": "debit",
                "issuer": None,
                "international": False,
                "emi": False,
                "sub_type": "consumer",
            },
            "bank": None,
            "wallet": None,
            "vpa": None,
            "email": "gaurav.kumar@example.com",
            "contact": "+919000090000",
            "notes": [],
            "fee": None,
            "tax": None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "acquirer_data": {"auth_code": "828553", "rrn": "322206890934"},
            "created_at": int(time.time()),
        }
        payment["card"]["id"] = payment["card_id"]
        self.payments[payment["id"]] = payment
        order["attempts"] += 1
        if order["status"] == "created":
            order["status"] = "attempted"
        if outcome == "failed":
            reason = FAILING_CARDS.get(card, "payment_failed")
            payment.update(
                status="failed",
                error_code="BAD_REQUEST_ERROR",
                error_description="Payment failed",
                error_source="bank",
                error_step="payment_authorization",
                error_reason=reason,
            )
            self._emit("payment.failed", payment=payment)
            return _error(
                400,
                "Payment failed",
                source="bank",
                step="payment_authorization",
                reason=reason,
                metadata={"order_id": order["id"], "payment_id": payment["id"]},
            )
        if outcome == "captured":
            self._capture_payment(payment)
        return JSONResponse(
            {
                "razorpay_order_id": order["id"],
                "razorpay_payment_id": payment["id"],
                "razorpay_signature": sign(
                    self.key_secret, f"{order['id']}|{payment['id']}".encode()
                ),
            }
        )

    async def _control_capture(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _not_found()
        if payment["captured"]:
            return _error(400, "This payment has already been captured")
        self._capture_payment(payment)
        return JSONResponse(payment)

    async def _control_settle(self, request: Request) -> Response:
        refund = self.refunds.get(request.path_params["refund_id"])
        data = await self._body(request) or {}
        status = data.get("status")
        if refund is None:
            return _not_found()
        if refund["status"] != "pending" or status not in ("processed", "failed"):
            return _error(400, "The refund cannot move to that status")
        self._settle(refund, str(status))
        return JSONResponse(refund)
