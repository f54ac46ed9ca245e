"""A wire-level Paystack emulator: an ASGI app tillpay's adapter reaches over HTTP.

It speaks the JSON API the adapter uses, with Paystack's ``{"status", "message", "data"}``
envelopes (shapes from PaystackOSS/doc-code-snippets, as collected in the project's
paystack-samples.json; error messages from PaystackOSS/openapi errors/api-errors.json):

- ``POST /transaction/initialize`` (Bearer secret key; JSON or form). A reused
  ``reference`` is refused with 400 "Duplicate Transaction Reference" (Paystack's error
  list: "This transaction reference has already been used on this integration"); a
  reference with characters other than letters, digits, ``-``, ``.`` and ``=`` with 400
  "Invalid character in transaction reference";
- ``GET /transaction/verify/{reference}`` (404 "Transaction reference not found");
- ``POST /refund``, ``GET /refund/{id}`` and ``GET /refund`` as the published API
  documents the list (PaystackOSS/openapi ``dist/paystack.yaml``, operation ``refund_list``:
  the only query parameters are ``perPage``, ``page``, ``from`` and ``to``). Any other
  parameter, such as ``transaction``, is ignored as Paystack ignores it, so a filter the
  API does not have cannot make a test pass. Refunds come newest first, ``perPage``
  defaults to 50 and the answer carries ``meta`` ``{total, skipped, perPage, page,
  pageCount}`` (the list answer in Paystack's docs, ``doc_refund_list_response`` of
  paystack-samples.json); ``from``/``to`` bound ``createdAt``;
- the hosted page ``https://checkout.paystack.test/{access_code}``: a form whose buttons
  succeed or decline, then a 302 to ``callback_url?trxref=…&reference=…`` like Paystack;
- control endpoints for tests (no auth): ``POST /_emulator/transactions/{reference}/complete``
  ``{"outcome", "amount"?, "currency"?}`` and ``POST /_emulator/refunds/{id}/settle``
  ``{"status"}``; the same operations are methods (:meth:`complete`, :meth:`settle`);
- webhooks signed like Paystack (``x-paystack-signature``: hex HMAC-SHA512 of the raw body
  with the secret key) POSTed to tillpay's ``/v1/webhooks/paystack`` from
  :attr:`source_ip`. Events raised by a control action are delivered at once unless
  :attr:`auto_deliver` is off; events raised inside an API call (``refund.pending``) wait in
  :attr:`outbox` for the next delivery, as Paystack sends them after answering.

Faults (:meth:`fail`, the shapes of tests/emulators/faults.py) apply to every call on the API
host, before authentication; an ``error`` answers Paystack's envelope
``{"status": false, "message": "An error occurred"}``. Wording of refusals Paystack does not
document (refund of an unpaid transaction, refund above the remaining amount) is ours.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.emulators.faults import FaultInjection, Faults

API_HOST = "api.paystack.test"
API_BASE = f"https://{API_HOST}"
CHECKOUT_HOST = "checkout.paystack.test"
# Paystack's published webhook source addresses (providers.md §3.3, unconfirmed).
WEBHOOK_IPS = ("52.31.139.75", "52.49.173.169", "52.214.14.220")
CURRENCIES = ("GHS", "KES", "NGN", "USD", "ZAR")
TEST_CARD = "4084084084084081"
REFERENCE_RE = re.compile(r"[A-Za-z0-9.=-]+")
# The fields of transaction-successful.json's data (before "plan").
CHARGE_EVENT_KEYS = (
    "id",
    "domain",
    "status",
    "reference",
    "amount",
    "message",
    "gateway_response",
    "paid_at",
    "created_at",
    "channel",
    "currency",
    "ip_address",
    "metadata",
    "log",
    "fees",
    "customer",
    "authorization",
)


def sign(body: bytes, secret_key: str) -> str:
    """Paystack's webhook signature, written independently of the adapter's."""
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _moment(text: str | None) -> datetime | None:
    """A ``from``/``to`` value (a date or an ISO date-time); ``None`` if absent or not
    a time (an unusable filter is ignored, not refused)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() and int(text) > 0 else default


def _ok(message: str, data: Any, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": True, "message": message, "data": data, **extra})


def _fail(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"status": False, "message": message}, status_code=status)


def _amount(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass
class Transaction:
    id: int
    reference: str
    access_code: str
    email: str
    amount: int
    currency: str
    callback_url: str | None
    metadata: Any
    created_at: str = field(default_factory=_now)
    status: str = "abandoned"
    gateway_response: str = "The transaction was not completed"
    paid_amount: int | None = None
    paid_currency: str | None = None
    paid_at: str | None = None
    refund_reserved: int = 0
    authorization_code: str = field(default_factory=lambda: f"AUTH_{secrets.token_hex(5)}")

    @property
    def charged_amount(self) -> int:
        return self.amount if self.paid_amount is None else self.paid_amount

    @property
    def charged_currency(self) -> str:
        return self.paid_currency or self.currency

    def card(self) -> dict[str, Any]:
        if self.status == "abandoned":
            return {}
        return {
            "authorization_code": self.authorization_code,
            "bin": TEST_CARD[:6],
            "last4": TEST_CARD[-4:],
            "exp_month": "12",
            "exp_year": "2030",
            "channel": "card",
            "card_type": "visa ",
            "bank": "TEST BANK",
            "country_code": "NG",
            "brand": "visa",
            "reusable": True,
            "signature": f"SIG_{self.id}",
            "account_name": None,
        }

    def customer(self) -> dict[str, Any]:
        return {
            "id": 181873746,
            "first_name": None,
            "last_name": None,
            "email": self.email,
            "customer_code": "CUS_1rkzaqsv4rrhqo6",
            "phone": None,
            "metadata": None,
            "risk_action": "default",
            "international_format_phone": None,
        }

    def verify_data(self) -> dict[str, Any]:
        """The ``data`` of ``GET /transaction/verify/{reference}``."""
        return {
            "id": self.id,
            "domain": "test",
            "status": self.status,
            "reference": self.reference,
            "receipt_number": None,
            "amount": self.charged_amount,
            "message": None,
            "gateway_response": self.gateway_response,
            "paid_at": self.paid_at,
            "created_at": self.created_at,
            "channel": "card",
            "currency": self.charged_currency,
            "ip_address": "197.210.54.33",
            "metadata": self.metadata if self.metadata is not None else "",
            "log": None,
            "fees": 10283 if self.status == "success" else None,
            "fees_split": None,
            "authorization": self.card(),
            "customer": self.customer(),
            "plan": None,
            "split": {},
            "order_id": None,
            "paidAt": self.paid_at,
            "createdAt": self.created_at,
            "requested_amount": self.amount,
            "pos_transaction_data": None,
            "source": None,
            "fees_breakdown": None,
            "connect": None,
            "transaction_date": self.created_at,
            "plan_object": {},
            "subaccount": {},
        }

    def charge_event(self) -> dict[str, Any]:
        """``charge.success`` as Paystack posts it (transaction-successful.json)."""
        verified = self.verify_data()
        data = {key: verified[key] for key in CHARGE_EVENT_KEYS}
        return {"event": "charge.success", "data": {**data, "plan": {}}}


@dataclass
class Refund:
    id: int
    transaction: Transaction
    amount: int
    currency: str
    merchant_note: str | None
    customer_note: str | None
    status: str = "pending"
    refund_reference: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    refunded_at: str | None = None

    @property
    def created_at(self) -> str:
        return _stamp(self.created)

    def data(self) -> dict[str, Any]:
        """The ``data`` of ``GET /refund/{id}`` (and of list items)."""
        return {
            "integration": 412829,
            "transaction": self.transaction.id,
            "dispute": None,
            "settlement": None,
            "domain": "test",
            "amount": self.amount,
            "deducted_amount": self.amount if self.status == "processed" else 0,
            "fully_deducted": self.status == "processed",
            "currency": self.currency,
            "channel": "card",
            "status": self.status,
            "refunded_by": "api@tillpay.test",
            "refunded_at": self.refunded_at,
            "expected_at": self.created_at,
            "customer_note": self.customer_note
            or f"Refund for transaction {self.transaction.reference}",
            "merchant_note": self.merchant_note,
            "id": self.id,
            "createdAt": self.created_at,
            "updatedAt": self.refunded_at or self.created_at,
        }

    def create_data(self) -> dict[str, Any]:
        """The ``data`` of ``POST /refund``: the transaction is embedded."""
        txn = self.transaction
        return {
            **self.data(),
            "transaction": {
                "id": txn.id,
                "domain": "test",
                "reference": txn.reference,
                "amount": txn.charged_amount,
                "paid_at": txn.paid_at,
                "channel": "card",
                "currency": txn.charged_currency,
            },
        }

    def event(self, *, with_id: bool = True) -> dict[str, Any]:
        """``refund.<status>`` as Paystack posts it (refund-*.json). The samples send the
        amount as a string, except refund-failed.json (an integer): mirrored here."""
        data: dict[str, Any] = {
            "status": self.status,
            "transaction_reference": self.transaction.reference,
            "refund_reference": self.refund_reference,
            "amount": self.amount if self.status == "failed" else str(self.amount),
            "currency": self.currency,
            "processor": "mpgs_zen",
            "customer": {"first_name": None, "last_name": None, "email": self.transaction.email},
            "integration": 412829,
            "domain": "test",
        }
        if with_id:
            data["id"] = str(self.id)  # as in refund-needs-attention.json
        return {"event": f"refund.{self.status}", "data": data}


class PaystackEmulator(FaultInjection):
    """One Paystack integration (one secret key) with its transactions and refunds."""

    def __init__(
        self,
        secret_key: str,
        *,
        currencies: Iterable[str] = CURRENCIES,
        source_ip: str = "203.0.113.10",
    ) -> None:
        self.secret_key = secret_key
        self.currencies = set(currencies)
        self.source_ip = source_ip
        self.auto_deliver = True
        self.refund_event_ids = True
        self.tillpay_app: Any = None
        self.transactions: dict[str, Transaction] = {}
        self.refunds: dict[int, Refund] = {}
        self.requests: list[str] = []  # "METHOD /path?query" of every API call
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (path, body) of writes
        self.outbox: list[dict[str, Any]] = []
        self.deliveries: list[httpx.Response] = []
        self.faults = Faults()
        self._transaction_ids = itertools.count(4099260516)
        self._refund_ids = itertools.count(3018284)
        self._api = Starlette(
            routes=[
                Route("/transaction/initialize", self._initialize, methods=["POST"]),
                Route("/transaction/verify/{reference}", self._verify, methods=["GET"]),
                Route("/refund", self._create_refund, methods=["POST"]),
                Route("/refund", self._list_refunds, methods=["GET"]),
                Route("/refund/{refund_id}", self._fetch_refund, methods=["GET"]),
                Route(
                    "/_emulator/transactions/{reference}/complete",
                    self._control_complete,
                    methods=["POST"],
                ),
                Route(
                    "/_emulator/refunds/{refund_id:int}/settle",
                    self._control_settle,
                    methods=["POST"],
                ),
            ]
        )
        self._checkout = Starlette(
            routes=[Route("/{access_code}", self._page, methods=["GET", "POST"])]
        )

    # ------------------------------------------------------------------------- wiring

    def install(self, app: Any) -> None:
        """Serve both hosts through the app's provider transport and post webhooks to it."""
        self.tillpay_app = app
        app.state.provider_transport.mount(API_HOST, self)
        app.state.provider_transport.mount(CHECKOUT_HOST, self)

    def client(self) -> httpx.AsyncClient:
        """A client for the control endpoints and the hosted page (a browser)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self), base_url=API_BASE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host = dict(scope["headers"]).get(b"host", b"").decode().split(":")[0]
        if host == CHECKOUT_HOST:
            await self._checkout(scope, receive, send)
            return
        path, query = scope["path"], scope.get("query_string", b"").decode()
        if not path.startswith("/_emulator/"):
            self.requests.append(f"{scope['method']} {path}" + (f"?{query}" if query else ""))
        await self.faults.serve(
            self._api, scope, receive, send, error=lambda status: _fail("An error occurred", status)
        )

    # ------------------------------------------------------------------------- API

    def _denied(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return _fail("No Authorization Header was found", 401)
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer" or not key:
            return _fail("Format is Authorization Bearer [secret key]", 401)
        if not hmac.compare_digest(key.encode(), self.secret_key.encode()):
            return _fail("Invalid key", 401)
        return None

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(raw.decode()))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _find(self, ident: str) -> Transaction | None:
        return self.transactions.get(ident) or next(
            (t for t in self.transactions.values() if str(t.id) == ident), None
        )

    async def _initialize(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await self._body(request)
        self.calls.append(("/transaction/initialize", body))
        email = str(body.get("email") or "").strip()
        if not email:
            return _fail("Email is not allowed to be empty")
        if "@" not in email:
            return _fail("Invalid Email Address Passed")
        amount = _amount(body.get("amount"))
        if amount is None or amount <= 0:
            return _fail("Invalid Amount Sent")
        currency = str(body.get("currency") or "NGN").upper()
        if currency not in self.currencies:
            return _fail("Currency not supported by merchant")
        reference = str(body.get("reference") or secrets.token_hex(8))
        if not REFERENCE_RE.fullmatch(reference):
            return _fail("Invalid character in transaction reference")
        if reference in self.transactions:
            return _fail("Duplicate Transaction Reference")
        metadata = body.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return _fail("Invalid metadata")
        txn = Transaction(
            id=next(self._transaction_ids),
            reference=reference,
            access_code=secrets.token_hex(8),
            email=email,
            amount=amount,
            currency=currency,
            callback_url=body.get("callback_url"),
            metadata=metadata,
        )
        self.transactions[reference] = txn
        return _ok(
            "Authorization URL created",
            {
                "authorization_url": f"https://{CHECKOUT_HOST}/{txn.access_code}",
                "access_code": txn.access_code,
                "reference": reference,
            },
        )

    async def _verify(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        txn = self.transactions.get(request.path_params["reference"])
        if txn is None:
            return _fail("Transaction reference not found", 404)
        return _ok("Verification successful", txn.verify_data())

    async def _create_refund(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await self._body(request)
        self.calls.append(("/refund", body))
        txn = self._find(str(body.get("transaction") or ""))
        if txn is None:
            return _fail("Transaction not found")
        if txn.status != "success":
            return _fail("Cannot refund a transaction that has not succeeded")
        remaining = txn.charged_amount - txn.refund_reserved
        if remaining <= 0:
            return _fail("Transaction has been fully reversed")
        amount = _amount(body["amount"]) if "amount" in body else remaining
        if amount is None or amount <= 0:
            return _fail("Invalid Amount Sent")
        if amount > remaining:
            return _fail("Refund amount cannot be more than the amount left to refund")
        currency = str(body.get("currency") or txn.charged_currency).upper()
        if currency != txn.charged_currency:
            return _fail("Currency does not match the transaction's")
        refund = Refund(
            id=next(self._refund_ids),
            transaction=txn,
            amount=amount,
            currency=currency,
            merchant_note=body.get("merchant_note"),
            customer_note=body.get("customer_note"),
        )
        txn.refund_reserved += amount
        self.refunds[refund.id] = refund
        self.outbox.append(refund.event(with_id=self.refund_event_ids))
        return _ok("Refund has been queued for processing", refund.create_data())

    async def _list_refunds(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        params = request.query_params
        per_page = _positive(params.get("perPage"), 50)
        page = _positive(params.get("page"), 1)
        since, until = _moment(params.get("from")), _moment(params.get("to"))
        found = [
            r
            for r in sorted(self.refunds.values(), key=lambda r: (r.created, r.id), reverse=True)
            if (since is None or r.created >= since) and (until is None or r.created <= until)
        ]
        chunk = found[(page - 1) * per_page : page * per_page]
        return _ok(
            "Refunds retrieved",
            [r.data() for r in chunk],
            meta={
                "total": len(found),
                "skipped": (page - 1) * per_page,
                "perPage": per_page,
                "page": page,
                "pageCount": max(1, -(-len(found) // per_page)),
            },
        )

    async def _fetch_refund(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        ident = request.path_params["refund_id"]
        refund = self.refunds.get(int(ident)) if ident.isdigit() else None
        if refund is None:
            return _fail("Refund not found", 404)
        return _ok("Refund retrieved", refund.data())

    # ------------------------------------------------------------------------- payer and tests

    def other_refunds(self, count: int, *, created: datetime | None = None) -> Transaction:
        """``count`` refunds of one paid transaction that tillpay did not make (another app
        on the same integration), created now or at ``created``."""
        txn = Transaction(
            id=next(self._transaction_ids),
            reference=f"other-{secrets.token_hex(6)}",
            access_code=secrets.token_hex(8),
            email="someone@other.test",
            amount=100 * count,
            currency="NGN",
            callback_url=None,
            metadata=None,
            status="success",
            gateway_response="Successful",
            paid_at=_now(),
        )
        self.transactions[txn.reference] = txn
        for _ in range(count):
            refund = Refund(
                id=next(self._refund_ids),
                transaction=txn,
                amount=100,
                currency="NGN",
                merchant_note="refund by another app",
                customer_note=None,
            )
            if created is not None:
                refund.created = created
            txn.refund_reserved += refund.amount
            self.refunds[refund.id] = refund
        return txn

    async def complete(
        self,
        reference: str,
        outcome: str = "success",
        *,
        amount: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any] | None:
        """The payer finishes (``success``, ``failed``) or the transaction moves to another
        Paystack status (``ongoing``, ``pending``, ``reversed``…). ``amount``/``currency``
        make the charge differ from what was asked. Returns the event raised, if any."""
        txn = self.transactions[reference]
        txn.status = outcome
        event: dict[str, Any] | None = None
        if outcome == "success":
            txn.gateway_response = "Successful"
            txn.paid_at = _now()
            txn.paid_amount = amount
            txn.paid_currency = currency
            event = txn.charge_event()
            self.outbox.append(event)
        elif outcome == "failed":
            txn.gateway_response = "Declined"
        await self._maybe_deliver()
        return event

    async def settle(self, refund_id: int, status: str = "processed") -> dict[str, Any]:
        """The refund reaches ``status`` (``processed``, ``failed``, ``needs-attention``…);
        returns the ``refund.<status>`` event raised."""
        refund = self.refunds[refund_id]
        refund.status = status
        if status == "processed":
            refund.refunded_at = _now()
            refund.refund_reference = f"{secrets.randbelow(10**12):012d}"
        elif status == "failed":
            refund.transaction.refund_reserved -= refund.amount
        event = refund.event(with_id=self.refund_event_ids)
        self.outbox.append(event)
        await self._maybe_deliver()
        return event

    async def _maybe_deliver(self) -> None:
        if self.auto_deliver:
            await self.flush()

    async def flush(self, *, times: int = 1, reverse: bool = False) -> list[httpx.Response]:
        """Deliver the waiting events (each ``times`` times; newest first if ``reverse``)."""
        events, self.outbox = self.outbox, []
        if reverse:
            events.reverse()
        responses: list[httpx.Response] = []
        for event in events:
            responses += await self.deliver(event, times=times)
        return responses

    async def deliver(
        self,
        event: dict[str, Any],
        *,
        times: int = 1,
        signature: str | None = None,
        body: bytes | None = None,
    ) -> list[httpx.Response]:
        """POST ``event`` to tillpay, signed like Paystack. ``signature`` overrides the
        header (``""`` leaves it out); ``body`` overrides the bytes sent."""
        raw = encode(event) if body is None else body
        headers = {"content-type": "application/json", "user-agent": "Paystack"}
        value = sign(raw, self.secret_key) if signature is None else signature
        if value:
            headers["x-paystack-signature"] = value
        transport = httpx.ASGITransport(app=self.tillpay_app, client=(self.source_ip, 443))
        responses: list[httpx.Response] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            for _ in range(times):
                response = await client.post("/v1/webhooks/paystack", content=raw, headers=headers)
                self.deliveries.append(response)
                responses.append(response)
        return responses

    async def _control_complete(self, request: Request) -> Response:
        body = await self._body(request)
        reference = request.path_params["reference"]
        if reference not in self.transactions:
            return _fail("Transaction reference not found", 404)
        before = len(self.deliveries)
        await self.complete(
            reference,
            str(body.get("outcome") or "success"),
            amount=_amount(body.get("amount")),
            currency=body.get("currency"),
        )
        txn = self.transactions[reference]
        return _ok(
            "Completed",
            {
                "status": txn.status,
                "callback_url": self._callback(txn),
                "deliveries": [r.status_code for r in self.deliveries[before:]],
            },
        )

    async def _control_settle(self, request: Request) -> Response:
        body = await self._body(request)
        refund_id = request.path_params["refund_id"]
        if refund_id not in self.refunds:
            return _fail("Refund not found", 404)
        await self.settle(refund_id, str(body.get("status") or "processed"))
        return _ok("Settled", self.refunds[refund_id].data())

    @staticmethod
    def _callback(txn: Transaction) -> str | None:
        if not txn.callback_url:
            return None
        separator = "&" if "?" in txn.callback_url else "?"
        query = urlencode({"trxref": txn.reference, "reference": txn.reference})
        return f"{txn.callback_url}{separator}{query}"

    async def _page(self, request: Request) -> Response:
        code = request.path_params["access_code"]
        txn = next((t for t in self.transactions.values() if t.access_code == code), None)
        if txn is None:
            return HTMLResponse("<!doctype html><p>Invalid checkout link.</p>", status_code=404)
        if request.method == "POST":
            form = dict(parse_qsl((await request.body()).decode()))
            outcome = form.get("outcome", "")
            if outcome not in ("success", "failed") or txn.status != "abandoned":
                return HTMLResponse("<!doctype html><p>Not allowed.</p>", status_code=400)
            await self.complete(txn.reference, outcome)
            callback = self._callback(txn)
            if callback is None:
                return HTMLResponse("<!doctype html><p>Done.</p>")
            return RedirectResponse(callback, status_code=302)
        amount = f"{txn.currency} {txn.amount / 100:,.2f}"
        return HTMLResponse(
            "<!doctype html><title>Paystack Checkout (emulator)</title>"
            f"<p>Pay {html.escape(amount)} as {html.escape(txn.email)}</p>"
            f"<p>Test card {TEST_CARD}, CVV 408, any future expiry.</p>"
            f"<form method='post' action='/{html.escape(code)}'>"
            "<button name='outcome' value='success'>Pay</button>"
            "<button name='outcome' value='failed'>Decline</button></form>"
        )
