"""A wire-level Stripe emulator: an ASGI app speaking Stripe's form-encoded v1 API.

What it does like Stripe (object shapes abridged from stripe/openapi fixtures3.json):

- ``Authorization: Bearer sk_test_…`` on every API call (401 ``invalid_request_error``
  otherwise); nested form parameters (``metadata[k]``, ``line_items[0][price_data][…]``,
  ``expand[0]``) decoded as Stripe does; unknown top-level parameters refused
  (``parameter_unknown``); errors as ``{"error": {"type", "code", "message", "param"}}``
  with a ``Request-Id`` header;
- ``Idempotency-Key`` on POSTs: the same key with the same method, path and parameters
  replays the stored answer (``Idempotent-Replayed: true``); other parameters → 400
  ``idempotency_error``; a key still in flight → 409. Validation failures are not stored;
- ``POST/GET /v1/checkout/sessions[/{id}]`` (``expand[]=payment_intent``),
  ``POST /v1/checkout/sessions/{id}/expire``, ``POST/GET /v1/payment_intents[/{id}]``,
  ``GET /v1/payment_intents/search`` (``metadata['k']:'v'`` clauses),
  ``POST /v1/payment_intents/{id}/confirm`` (secret key, or Stripe.js's publishable ``key``
  plus ``client_secret``), ``POST /v1/payment_intents/{id}/cancel``, ``POST/GET
  /v1/refunds[/{id}]``;
- Checkout Session ``expires_at`` as Stripe documents it: "between 30 minutes and 24 hours
  after the current time" (docs.stripe.com/payments/checkout/managing-limited-inventory;
  the API reference, docs.stripe.com/api/checkout/sessions/create ``expires_at``: "anywhere
  from 30 minutes to 24 hours after Checkout Session creation"), judged exactly against
  the emulator's own clock when the request arrives (fractions of a second count; no
  tolerance). :attr:`StripeEmulator.clock_offset` moves Stripe's clock against tillpay's
  (skew, latency);
- Stripe's amount rules: zero-decimal currencies, ISK/UGX as two-decimal amounts ending in
  ``00``, three-decimal amounts ending in ``0``, per-currency minimums, eight digits max;
- events ``{"object": "event", "data": {"object": …}}`` queued as state changes and posted
  (pretty-printed, as Stripe does) to tillpay with ``Stripe-Signature: t=…,v1=…``, signed
  by :func:`sign`, written independently of the adapter (it uses the SDK).

The payer: ``POST https://checkout.stripe.test/c/pay/{session}`` with ``payment_method``
(or ``card_number``) pays a Checkout Session as the hosted page would; Elements confirms a
PaymentIntent through ``/confirm``. Test payment methods: ``pm_card_visa`` /
``pm_card_mastercard`` succeed, ``pm_card_chargeDeclined`` and
``pm_card_chargeDeclinedInsufficientFunds`` decline, ``pm_delayed`` (a stand-in for bank
debits) leaves the payment ``processing`` until :meth:`StripeEmulator.settle`.

Test controls: :meth:`StripeEmulator.fail` (the faults of tests/emulators/faults.py, applied
to API calls after they are recorded and before authentication; an ``error`` answers
``api_error``), :meth:`deliver` (in order, reversed, twice), ``refund_outcome`` and
:meth:`settle_refund` for refunds that are pending first.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.emulators.faults import FaultInjection, Faults

API_HOST = "api.stripe.test"
CHECKOUT_HOST = "checkout.stripe.test"
API_VERSION = "2026-10-28.endive"

ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
WHOLE_TWO_DECIMAL = frozenset({"isk", "ugx"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
MINIMUM = {"usd": 50, "eur": 50, "gbp": 30, "jpy": 50, "chf": 50, "cad": 50, "aud": 50}

SUCCEEDING = {"pm_card_visa", "pm_card_mastercard", "pm_card_amex"}
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
DELAYED = "pm_delayed"
CARD_NUMBERS = {
    "4242424242424242": "pm_card_visa",
    "5555555555554444": "pm_card_mastercard",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
}

SESSION_PARAMS = {
    "mode", "line_items", "success_url", "cancel_url", "client_reference_id", "metadata",
    "payment_intent_data", "customer_email", "expires_at", "payment_method_types", "currency",
    "ui_mode", "return_url", "locale", "expand",
}  # fmt: skip
INTENT_PARAMS = {
    "amount", "currency", "automatic_payment_methods", "capture_method", "confirm",
    "description", "metadata", "payment_method", "payment_method_types", "receipt_email",
    "expand",
}  # fmt: skip
REFUND_PARAMS = {"payment_intent", "charge", "amount", "reason", "metadata", "expand"}


def sign(body: bytes, secrets_: list[str], timestamp: int) -> str:
    """The ``Stripe-Signature`` header: one ``v1`` per secret, HMAC-SHA256 over
    ``"{t}.{body}"``."""
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    parts += [
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets_
    ]
    return ",".join(parts)


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket notation (``a[b][0][c]=v``, ``expand[]=x``) into dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        names = [head, *re.findall(r"([^\[\]]*)\]", "[" + rest if rest else "")]
        node = root
        for i, name in enumerate(names):
            if name == "":  # "expand[]": append
                name = str(sum(1 for k in node if k.isdigit()))
            if i == len(names) - 1:
                node[name] = value
            else:
                node = node.setdefault(name, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class StripeFailure(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        store: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.code, self.param, self.extra, self.store = code, param, extra or {}, store

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code=code, param=param)


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    replayed: bool = False


@dataclass
class Event:
    body: dict[str, Any]
    raw: bytes = b""


@dataclass
class StripeEmulator(FaultInjection):
    """The emulator app plus its state; see the module docstring."""

    api_key: str
    webhook_secrets: list[str]
    publishable_key: str = "pk_test_emulator"
    webhook_path: str = "/v1/webhooks/stripe"
    refund_outcome: str = "succeeded"  # or "pending": settled later by settle_refund()
    # Seconds Stripe's clock runs ahead of tillpay's (negative: behind).
    clock_offset: float = 0.0
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)  # queued, not yet delivered
    sent: list[tuple[Event, int]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    webhook_transport: httpx.AsyncBaseTransport | None = None

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{id}", self._get_session, methods=["GET"]),
                Route("/v1/checkout/sessions/{id}/expire", self._expire, methods=["POST"]),
                Route("/v1/payment_intents", self._create_intent, methods=["POST"]),
                Route("/v1/payment_intents/search", self._search, methods=["GET"]),
                Route("/v1/payment_intents/{id}", self._get_intent, methods=["GET"]),
                Route("/v1/payment_intents/{id}/confirm", self._confirm, methods=["POST"]),
                Route("/v1/payment_intents/{id}/cancel", self._cancel, methods=["POST"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
                Route("/v1/refunds/{id}", self._get_refund, methods=["GET"]),
                Route("/c/pay/{id}", self._hosted_page, methods=["GET", "POST"]),
            ]
        )

    # ------------------------------------------------------------------------- wiring

    def attach(self, tillpay_app: Any) -> None:
        """Serve Stripe's hosts to tillpay's adapter and post events to tillpay's app."""
        tillpay_app.state.provider_transport.mount(API_HOST, self.app)
        tillpay_app.state.provider_transport.mount(CHECKOUT_HOST, self.app)
        self.webhook_transport = httpx.ASGITransport(app=tillpay_app)

    def browser(self) -> httpx.AsyncClient:
        """An HTTP client for the payer's side (hosted page, Stripe.js calls)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=f"https://{CHECKOUT_HOST}"
        )

    def by_reference(self, reference: str) -> dict[str, Any]:
        """The session (or, without one, the PaymentIntent) created for ``reference``."""
        for session in self.sessions.values():
            if session["client_reference_id"] == reference:
                return session
        for intent in self.intents.values():
            if intent["metadata"].get("tillpay_reference") == reference:
                return intent
        raise KeyError(reference)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # ------------------------------------------------------------------------- webhooks

    def _emit(self, type_: str, obj: dict[str, Any], *, key: str | None = None) -> None:
        body = {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": self._render(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": _id("req"), "idempotency_key": key},
            "type": type_,
        }
        self.events.append(Event(body, json.dumps(body, indent=2).encode()))

    def signed(self, event: Event, *, timestamp: int | None = None) -> dict[str, str]:
        stamp = int(time.time()) if timestamp is None else timestamp
        return {
            "content-type": "application/json; charset=utf-8",
            "stripe-signature": sign(event.raw, self.webhook_secrets, stamp),
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }

    async def post(self, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        assert self.webhook_transport is not None, "attach() the emulator first"
        async with httpx.AsyncClient(
            transport=self.webhook_transport, base_url="http://localhost"
        ) as client:
            return await client.post(self.webhook_path, content=raw, headers=headers)

    async def deliver(
        self, *, reverse: bool = False, twice: bool = False, types: set[str] | None = None
    ) -> list[int]:
        """Post the queued events (optionally only ``types``); their HTTP statuses."""
        batch = [e for e in self.events if types is None or e.body["type"] in types]
        self.events = [e for e in self.events if e not in batch]
        if reverse:
            batch.reverse()
        statuses = []
        for event in batch:
            for _ in range(2 if twice else 1):
                response = await self.post(event.raw, self.signed(event))
                self.sent.append((event, response.status_code))
                statuses.append(response.status_code)
        return statuses

    def drop_events(self) -> None:
        self.events.clear()

    # ------------------------------------------------------------------------- payer

    def _charge(self, intent: dict[str, Any], method: str, *, paid: bool) -> dict[str, Any]:
        charge = {
            "id": _id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "balance_transaction": _id("txn") if paid else None,
            "captured": paid,
            "created": int(time.time()),
            "currency": intent["currency"],
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": {},
            "outcome": {"type": "authorized" if paid else "issuer_declined"},
            "paid": paid,
            "payment_intent": intent["id"],
            "payment_method": method,
            "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}, "type": "card"},
            "refunded": False,
            "status": "succeeded" if paid else "failed",
        }
        self.charges[charge["id"]] = charge
        return charge

    def _pay(self, intent: dict[str, Any], method: str) -> StripeFailure | None:
        """Confirm ``intent`` with ``method`` (card outcomes as Stripe's test methods)."""
        intent["payment_method"] = method
        if method in DECLINES:
            code, decline, message = DECLINES[method]
            charge = self._charge(intent, method, paid=False)
            charge.update(failure_code=decline, failure_message=message)
            error = {
                "type": "card_error",
                "code": code,
                "decline_code": decline,
                "message": message,
                "charge": charge["id"],
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            intent["latest_charge"] = charge["id"]
            self._emit("charge.failed", charge)
            self._emit("payment_intent.payment_failed", intent)
            return StripeFailure(
                402,
                "card_error",
                message,
                code=code,
                extra={"decline_code": decline, "payment_intent": self._render(intent)},
                store=True,
            )
        if method == DELAYED:
            intent.update(status="processing", last_payment_error=None)
            self._emit("payment_intent.processing", intent)
            return None
        if method not in SUCCEEDING:
            raise invalid(f"No such PaymentMethod: '{method}'", code="resource_missing")
        self._succeed(intent, method)
        return None

    def _succeed(self, intent: dict[str, Any], method: str) -> None:
        charge = self._charge(intent, method, paid=True)
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            last_payment_error=None,
            latest_charge=charge["id"],
        )
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)

    def _session_intent(self, session: dict[str, Any]) -> dict[str, Any]:
        # ``payment_intent_data`` is "a subset of parameters to be passed to PaymentIntent
        # creation for Checkout Sessions in payment mode" (docs.stripe.com/api/checkout/
        # sessions/create#create_checkout_session-payment_intent_data): its metadata is the
        # PaymentIntent's, which is how a dashboard refund (naming only the PaymentIntent)
        # leads back to the session's attempt.
        if session["payment_intent"] is None:
            data = session.pop("_payment_intent_data", {})
            intent = self._new_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                metadata=dict(data.get("metadata") or {}),
                description=data.get("description"),
            )
            session["payment_intent"] = intent["id"]
            self._emit("payment_intent.created", intent)
        return self.intents[session["payment_intent"]]

    def settle(self, intent_id: str, *, succeeded: bool) -> None:
        """A delayed payment (``pm_delayed``) clears or bounces."""
        intent = self.intents[intent_id]
        assert intent["status"] == "processing", intent["status"]
        session = next(
            (s for s in self.sessions.values() if s["payment_intent"] == intent_id), None
        )
        if succeeded:
            self._succeed(intent, intent["payment_method"])
        else:
            error = {"type": "card_error", "code": "payment_method_provider_decline"}
            intent.update(status="requires_payment_method", last_payment_error=error)
            self._emit("payment_intent.payment_failed", intent)
        if session is not None:
            session["payment_status"] = "paid" if succeeded else "unpaid"
            kind = "succeeded" if succeeded else "failed"
            self._emit(f"checkout.session.async_payment_{kind}", session)

    def settle_refund(self, refund_id: str, *, succeeded: bool) -> None:
        """A pending refund (``refund_outcome="pending"``) completes or fails."""
        refund = self.refunds[refund_id]
        assert refund["status"] == "pending"
        if succeeded:
            refund["status"] = "succeeded"
            self._emit("refund.updated", refund)
            self._refunded(refund)
        else:
            refund.update(status="failed", failure_reason="lost_or_stolen_card")
            self._release(refund)
            self._emit("refund.updated", refund)
            self._emit("refund.failed", refund)

    def _refunded(self, refund: dict[str, Any]) -> None:
        charge = self.charges[refund["charge"]]
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        self._emit("charge.refunded", charge)

    def _release(self, refund: dict[str, Any]) -> None:
        self.charges[refund["charge"]]["amount_refunded"] -= refund["amount"]

    # ------------------------------------------------------------------------- objects

    def _render(self, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
        if out.get("object") == "checkout.session" and "payment_intent" in (expand or []):
            pid = out.get("payment_intent")
            out["payment_intent"] = self._render(self.intents[pid]) if pid else None
        return out

    def _new_intent(
        self, *, amount: int, currency: str, metadata: dict[str, str], description: str | None
    ) -> dict[str, Any]:
        pid = _id("pi")
        intent = {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": {"enabled": True},
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pid}_secret_{secrets.token_hex(12)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "customer": None,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self.intents[pid] = intent
        return intent

    # ------------------------------------------------------------------------- plumbing

    def _authorised(self, request: Request, params: dict[str, Any]) -> None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            key = header[len("Bearer ") :]
            if hmac.compare_digest(key.encode(), self.api_key.encode()):
                return
            raise StripeFailure(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {key[:8]}****{key[-4:]}",
                code="api_key_invalid",
            )
        raise StripeFailure(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )

    async def _handle(
        self,
        request: Request,
        action: Any,
        *,
        allowed: set[str] | None = None,
        browser: bool = False,
    ) -> Response:
        method, path = request.method, request.url.path
        raw = (await request.body()).decode()
        query = list(parse_qsl(request.url.query, keep_blank_values=True))
        params = decode_form(query + list(parse_qsl(raw, keep_blank_values=True)))
        key = request.headers.get("idempotency-key") if method == "POST" else None
        record = Recorded(
            method,
            path,
            params,
            {
                k: v
                for k, v in request.headers.items()
                if k in ("idempotency-key", "stripe-version", "content-type")
            },
        )
        self.requests.append(record)
        fault = self.faults.take(method, path)
        if fault is not None:
            await fault.before()
            if fault.kind == "error":
                return fault.response(self._api_error)
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        try:
            if not browser or "authorization" in request.headers:
                self._authorised(request, params)
            if allowed is not None:
                unknown = sorted(set(params) - allowed)
                if unknown:
                    raise invalid(
                        f"Received unknown parameter: {unknown[0]}",
                        code="parameter_unknown",
                        param=unknown[0],
                    )
            if key:
                stored = self.idempotency.get(key)
                if stored is not None:
                    if stored[0] != fingerprint:
                        raise StripeFailure(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                        )
                    record.replayed = True
                    if fault is not None:  # "timeout_after": the replay's answer is lost too
                        fault.after()
                    return self._json(stored[2], stored[1], replayed=True)
                if key in self.in_flight:
                    raise StripeFailure(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this "
                        f"Idempotent Key (that probably means you submitted twice, and the "
                        f"other request is still going through): {key}.",
                    )
                self.in_flight.add(key)
            try:
                status, body = action(params, request)
            finally:
                if key:
                    self.in_flight.discard(key)
        except StripeFailure as failure:
            if key and failure.store:
                self.idempotency[key] = (fingerprint, failure.status, failure.body())
            return self._json(failure.body(), failure.status)
        if key:
            self.idempotency[key] = (fingerprint, status, body)
        if fault is not None:  # "timeout_after": the effect happened, the answer is lost
            fault.after()
        return self._json(body, status)

    @classmethod
    def _api_error(cls, status: int) -> Response:
        return cls._json(
            {"error": {"type": "api_error", "message": "An unknown error occurred"}}, status
        )

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200, *, replayed: bool = False) -> Response:
        headers = {"request-id": _id("req"), "stripe-version": API_VERSION}
        if replayed:
            headers["idempotent-replayed"] = "true"
        return JSONResponse(body, status_code=status, headers=headers)

    # ------------------------------------------------------------------------- validation

    @staticmethod
    def _amount(value: Any, currency: str, param: str) -> int:
        try:
            amount = int(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid integer: {value}", param=param) from None
        if amount < MINIMUM.get(currency, 1):
            raise invalid(
                "Amount must convert to at least 50 cents.", code="amount_too_small", param=param
            )
        if amount > 99_999_999:
            raise invalid(
                "Amount must be no more than 99,999,999", code="amount_too_large", param=param
            )
        if currency in WHOLE_TWO_DECIMAL and amount % 100:
            raise invalid(
                f"Invalid amount. Currency {currency.upper()} has become effectively "
                "zero-decimal and charged amounts must be evenly divisible by 100.",
                code="invalid_charge_amount_no_decimal_compatible",
                param=param,
            )
        if currency in THREE_DECIMAL and amount % 10:
            raise invalid(
                "Amounts in three-decimal currencies must end in 0.",
                code="invalid_charge_amount",
                param=param,
            )
        return amount

    @staticmethod
    def _currency(value: Any, param: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[a-z]{3}", value):
            raise invalid(f"Invalid currency: {value}", param=param)
        return value

    @staticmethod
    def _metadata(value: Any, param: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > 50:
            raise invalid("Invalid metadata", param=param)
        return dict(value)

    # ------------------------------------------------------------------------- API

    async def _create_session(self, request: Request) -> Response:
        return await self._handle(request, self._session_create, allowed=SESSION_PARAMS)

    def _session_create(self, p: dict[str, Any], _: Request) -> tuple[int, dict[str, Any]]:
        if p.get("mode") != "payment":
            raise invalid("Missing required param: mode.", param="mode")
        for name in ("success_url", "cancel_url"):
            if name in p and not str(p[name]).startswith(("http://", "https://")):
                raise invalid("Not a valid URL", param=name)
        if "success_url" not in p:
            raise invalid("Missing required param: success_url.", param="success_url")
        items = p.get("line_items")
        if not isinstance(items, list) or not items:
            raise invalid("Missing required param: line_items.", param="line_items")
        total, currency = 0, None
        for i, item in enumerate(items):
            price = item.get("price_data") or {}
            cur = self._currency(price.get("currency"), f"line_items[{i}][price_data][currency]")
            if currency not in (None, cur):
                raise invalid("All line items must use the same currency.")
            currency = cur
            if not (price.get("product_data") or {}).get("name"):
                raise invalid(
                    "Missing required param: line_items[0][price_data][product_data][name].",
                    param=f"line_items[{i}][price_data][product_data][name]",
                )
            quantity = int(item.get("quantity", 0))
            if quantity < 1:
                raise invalid("Missing required param: quantity.", param="quantity")
            total += int(price.get("unit_amount", 0)) * quantity
        assert currency is not None
        total = self._amount(total, currency, "line_items[0][price_data][unit_amount]")
        arrived = time.time() + self.clock_offset
        now = int(arrived)
        expires_at = int(p.get("expires_at", now + 86400))
        if not 1800 <= expires_at - arrived <= 86400:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                param="expires_at",
            )
        data = p.get("payment_intent_data") or {}
        self._metadata(data.get("metadata"), "payment_intent_data[metadata]")
        sid = f"cs_test_{secrets.token_hex(24)}"
        session = {
            "id": sid,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "client_secret": None,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": None,
            "customer_email": p.get("customer_email"),
            "expires_at": expires_at,
            "invoice": None,
            "livemode": False,
            "locale": None,
            "metadata": self._metadata(p.get("metadata"), "metadata"),
            "mode": "payment",
            "payment_intent": None,  # created when the payer confirms (API ≥ 2022-08-01)
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": p["success_url"],
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"https://{CHECKOUT_HOST}/c/pay/{sid}",
            "_payment_intent_data": data,
        }
        self.sessions[sid] = session
        return 200, self._render(session)

    def _expand(self, p: dict[str, Any]) -> list[str]:
        value = p.get("expand") or []
        return list(value) if isinstance(value, list) else [value]

    def _session(self, sid: str) -> dict[str, Any]:
        if sid not in self.sessions:
            raise StripeFailure(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{sid}'",
                code="resource_missing",
                param="session",
            )
        return self.sessions[sid]

    def _intent(self, pid: str) -> dict[str, Any]:
        if pid not in self.intents:
            raise StripeFailure(
                404,
                "invalid_request_error",
                f"No such payment_intent: '{pid}'",
                code="resource_missing",
                param="intent",
            )
        return self.intents[pid]

    async def _get_session(self, request: Request) -> Response:
        sid = request.path_params["id"]
        return await self._handle(
            request,
            lambda p, _: (200, self._render(self._session(sid), self._expand(p))),
            allowed={"expand"},
        )

    async def _expire(self, request: Request) -> Response:
        sid = request.path_params["id"]

        def run(p: dict[str, Any], _: Request) -> tuple[int, dict[str, Any]]:
            session = self._session(sid)
            if session["status"] != "open":
                raise invalid(
                    f"Only Checkout Sessions with a status of open can be expired. This "
                    f"Checkout Session has a status of {session['status']}.",
                )
            session["status"] = "expired"
            session["url"] = None
            self._emit("checkout.session.expired", session)
            return 200, self._render(session)

        return await self._handle(request, run, allowed={"expand"})

    async def _create_intent(self, request: Request) -> Response:
        def run(p: dict[str, Any], req: Request) -> tuple[int, dict[str, Any]]:
            if "amount" not in p:
                raise invalid("Missing required param: amount.", param="amount")
            currency = self._currency(p.get("currency"), "currency")
            intent = self._new_intent(
                amount=self._amount(p["amount"], currency, "amount"),
                currency=currency,
                metadata=self._metadata(p.get("metadata"), "metadata"),
                description=p.get("description"),
            )
            self._emit("payment_intent.created", intent, key=req.headers.get("idempotency-key"))
            return 200, self._render(intent)

        return await self._handle(request, run, allowed=INTENT_PARAMS)

    async def _get_intent(self, request: Request) -> Response:
        pid = request.path_params["id"]
        return await self._handle(
            request,
            lambda p, _: (200, self._render(self._intent(pid))),
            allowed={"expand", "client_secret"},
        )

    async def _search(self, request: Request) -> Response:
        def run(p: dict[str, Any], _: Request) -> tuple[int, dict[str, Any]]:
            query = str(p.get("query") or "")
            clauses = re.findall(r"""metadata\[(['"])(.+?)\1\]:(['"])(.*?)\3""", query)
            if not clauses:
                raise invalid("Invalid query", code="search_query_invalid", param="query")
            found = [
                self._render(i)
                for i in self.intents.values()
                if all(i["metadata"].get(k) == v for _, k, _, v in clauses)
            ]
            found.sort(key=lambda i: -i["created"])
            return 200, {
                "object": "search_result",
                "data": found[: int(p.get("limit", 10))],
                "has_more": False,
                "next_page": None,
                "url": "/v1/payment_intents/search",
            }

        return await self._handle(request, run, allowed={"query", "limit", "page", "expand"})

    def _client_auth(self, request: Request, p: dict[str, Any], intent: dict[str, Any]) -> None:
        """Stripe.js authenticates with the publishable key and the client secret."""
        if "authorization" in request.headers:
            return
        if p.get("key") != self.publishable_key or not hmac.compare_digest(
            str(p.get("client_secret", "")).encode(), intent["client_secret"].encode()
        ):
            raise StripeFailure(
                401, "invalid_request_error", "Invalid client secret or publishable key."
            )

    async def _confirm(self, request: Request) -> Response:
        pid = request.path_params["id"]

        def run(p: dict[str, Any], req: Request) -> tuple[int, dict[str, Any]]:
            intent = self._intent(pid)
            self._client_auth(req, p, intent)
            if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
                raise invalid(
                    "This PaymentIntent's status is "
                    f"{intent['status']}, so it cannot be confirmed.",
                    code="payment_intent_unexpected_state",
                )
            failure = self._pay(intent, str(p.get("payment_method", "")))
            if failure is not None:
                raise failure
            return 200, self._render(intent)

        return await self._handle(
            request,
            run,
            allowed={"payment_method", "key", "client_secret", "return_url", "expand"},
            browser=True,
        )

    async def _cancel(self, request: Request) -> Response:
        pid = request.path_params["id"]

        def run(p: dict[str, Any], _: Request) -> tuple[int, dict[str, Any]]:
            intent = self._intent(pid)
            if intent["status"] in ("succeeded", "canceled", "processing"):
                raise invalid(
                    "You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                )
            intent.update(
                status="canceled",
                canceled_at=int(time.time()),
                cancellation_reason=p.get("cancellation_reason"),
            )
            self._emit("payment_intent.canceled", intent)
            return 200, self._render(intent)

        return await self._handle(request, run, allowed={"cancellation_reason", "expand"})

    async def _create_refund(self, request: Request) -> Response:
        def run(p: dict[str, Any], req: Request) -> tuple[int, dict[str, Any]]:
            if "payment_intent" in p:
                intent = self._intent(str(p["payment_intent"]))
                charge = self.charges.get(intent["latest_charge"] or "")
            elif "charge" in p:
                charge = self.charges.get(str(p["charge"]))
            else:
                raise invalid("One of `charge` or `payment_intent` is required.")
            if charge is None or charge["status"] != "succeeded":
                raise invalid(
                    "This PaymentIntent does not have a successful charge to refund.",
                    code="charge_not_refundable",
                )
            remaining = charge["amount_captured"] - charge["amount_refunded"]
            if remaining <= 0:
                raise invalid(
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                )
            amount = int(p.get("amount", remaining))
            if amount <= 0:
                raise invalid("Invalid positive integer", param="amount")
            if amount > remaining:
                raise invalid(
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({remaining})",
                    code="amount_too_large",
                    param="amount",
                )
            if p.get("reason") not in (None, "duplicate", "fraudulent", "requested_by_customer"):
                raise invalid("Invalid reason", param="reason")
            charge["amount_refunded"] += amount
            refund = {
                "id": _id("re"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": _id("txn"),
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "destination_details": {"card": {"type": "refund"}, "type": "card"},
                "metadata": self._metadata(p.get("metadata"), "metadata"),
                "payment_intent": charge["payment_intent"],
                "reason": p.get("reason"),
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": self.refund_outcome,
                "transfer_reversal": None,
            }
            self.refunds[refund["id"]] = refund
            self._emit("refund.created", refund, key=req.headers.get("idempotency-key"))
            if refund["status"] == "succeeded":
                self._refunded(refund)
            return 200, self._render(refund)

        return await self._handle(request, run, allowed=REFUND_PARAMS)

    async def _get_refund(self, request: Request) -> Response:
        rid = request.path_params["id"]

        def run(p: dict[str, Any], _: Request) -> tuple[int, dict[str, Any]]:
            if rid not in self.refunds:
                raise StripeFailure(
                    404,
                    "invalid_request_error",
                    f"No such refund: '{rid}'",
                    code="resource_missing",
                    param="id",
                )
            return 200, self._render(self.refunds[rid])

        return await self._handle(request, run, allowed={"expand"})

    async def _hosted_page(self, request: Request) -> Response:
        """checkout.stripe.com: GET shows the page; POST pays as the payer would."""
        session = self.sessions.get(request.path_params["id"])
        if session is None or session["status"] != "open":
            return HTMLResponse("<p>This Checkout Session is no longer active.</p>", 410)
        if request.method == "GET":
            amount = f"{session['amount_total']} {session['currency'].upper()}"
            return HTMLResponse(f"<form method='post'><p>Pay {amount}</p></form>")
        form = dict(parse_qsl((await request.body()).decode()))
        method = form.get("payment_method") or CARD_NUMBERS.get(
            form.get("card_number", "").replace(" ", ""), "pm_card_chargeDeclined"
        )
        intent = self._session_intent(session)
        failure = self._pay(intent, method)
        if failure is not None:
            return HTMLResponse(f"<p>{failure.message}</p>", 402)
        session["status"] = "complete"
        session["payment_status"] = "paid" if intent["status"] == "succeeded" else "unpaid"
        self._emit("checkout.session.completed", session)
        return RedirectResponse(session["success_url"], status_code=303)
