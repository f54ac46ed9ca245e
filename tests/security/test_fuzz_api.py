"""Property-based fuzzing of every documented operation with schemathesis (checklist §9).

Each operation gets schema-conforming and schema-violating requests, sent with no token and
with a verified customer's, a vendor's and a 2FA admin's token. Some examples carry the ids
of real objects (the role's own product, cart line, orders, payment, ...) so the fuzzed
bodies reach the service layer instead of stopping at a 404. A 5xx is always a bug; so is an
error that is not ``application/problem+json``, and a documented 2xx whose body breaks its
own schema.

Requests go through the harness's client on the test's event loop (the app's database pool
lives there); hypothesis runs in a worker thread and hands each request over to that loop.
``TILLPAY_FUZZ_EXAMPLES`` sets the number of examples per operation: 5 in the everyday run
(drawing examples from the schemas, not sending them, is most of the cost), 15 in the deep
pass that ``.ci/run`` adds after the suite, more for a longer hunt.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.accounts.helpers import PASSWORD, Account, Accounts
from tests.commerce.helpers import Shop
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tillpay.kit import signing
from tillpay.kit.money import MAX_AMOUNT
from tillpay.sandbox import psp

EXAMPLES = int(os.environ.get("TILLPAY_FUZZ_EXAMPLES", "5"))
# Successful answers must match the documented media type and schema. Errors are all
# problem+json (RFC 9457), which FastAPI's generated 422 entries do not describe, so
# they are checked for that instead.
SUCCESS_CHECKS: list[Any] = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
]
ERROR_CHECKS: list[Any] = [not_a_server_error]
# Operations that end the caller's own session: fuzzed last, in this order, so the rest
# run signed in.
SESSION_ENDING = ["DELETE /v1/auth/sessions/{session_id}", "POST /v1/auth/logout"]

Role = str
ROLES: list[Role] = ["anonymous", "customer", "vendor", "admin"]

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
Send = Callable[[Coroutine[Any, Any, httpx.Response]], httpx.Response]


def _bridge() -> Send:
    """Lets hypothesis, running in a worker thread, send requests on the test's loop."""
    loop = asyncio.get_running_loop()

    def run(request: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)

    return run


def _assert_problem_json(response: httpx.Response, what: str) -> None:
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), (
        f"{what}\n{response.status_code} {content_type}"
    )


@dataclass
class World:
    """The signed-in caller and real object ids to plant in path, query and body fields."""

    caller: Account | None
    ids: dict[str, list[str]] = field(default_factory=dict)


async def _arrange(accounts: Accounts, role: Role) -> World:
    shop = Shop(accounts)
    checkout = Checkout(shop)
    vendor = await shop.vendor()
    customer = await shop.customer()
    admin = await accounts.admin() if role == "admin" else None
    product = await shop.product(vendor)
    variant_id = product["variants"][0]["id"]
    paid_order, payment = await checkout.paid_order(customer, vendor=vendor)
    pending_order = await shop.order(customer, vendor=vendor)
    cart = (await shop.add_to_cart(customer, variant_id)).json()
    caller = {"anonymous": None, "customer": customer, "vendor": vendor, "admin": admin}[role]
    users = [customer.user_id, vendor.user_id]
    ids = {
        "product_id": [product["id"]],
        "variant_id": [variant_id],
        "line_id": [line["id"] for line in cart["lines"]],
        "order_id": [paid_order["id"], pending_order["id"]],
        "payment_id": [payment["id"]],
        "user_id": users,
        "vendor_id": [vendor.user_id],
        "customer_id": [customer.user_id],
        "actor_id": users,
        "target_id": [*users, paid_order["id"], payment["id"]],
        "session_id": [customer.session_id, vendor.session_id],
        "provider": ["sandbox"],
    }
    if admin is not None:
        events = await accounts.client.get("/v1/admin/webhook-events", headers=admin.headers)
        ids["event_id"] = [event["id"] for event in events.json()]
    return World(caller=caller, ids={name: values for name, values in ids.items() if values})


async def _send(client: httpx.AsyncClient, case: Case, headers: dict[str, str]) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    data = kwargs.get("data")
    return await client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs["headers"],
        params=kwargs.get("params") or None,
        cookies=kwargs.get("cookies") or None,
        json=kwargs.get("json"),
        content=data if isinstance(data, bytes | str) else None,
        data=data if isinstance(data, dict) else None,
    )


def _fuzz(operation: APIOperation, world: World, run: Send, client: httpx.AsyncClient) -> None:
    """Run hypothesis over one operation; raises on the first (shrunk) failure."""
    headers = world.caller.headers if world.caller else {}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @FUZZ_SETTINGS
    @given(case=cases, plant=st.data())
    def example(case: Case, plant: st.DataObject) -> None:
        for fields in (case.path_parameters, case.query, case.body):
            if not isinstance(fields, dict):
                continue
            for name in sorted(fields.keys() & world.ids.keys()):
                if plant.draw(st.booleans(), label=f"plant {name}"):
                    fields[name] = plant.draw(st.sampled_from(world.ids[name]))
        response = run(_send(client, case, headers))
        failed = response.status_code >= 400
        case.validate_response(response, checks=ERROR_CHECKS if failed else SUCCESS_CHECKS)
        if failed:
            _assert_problem_json(response, case.as_curl_command())

    example()


@pytest.mark.parametrize("role", ROLES)
async def test_no_operation_answers_a_server_error_or_an_undocumented_shape(
    client: httpx.AsyncClient, accounts: Accounts, role: Role
) -> None:
    world = await _arrange(accounts, role)
    spec = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = sorted(
        # An operation schemathesis cannot read fails the test here (Err has no ok()).
        (result.ok() for result in schema.get_all_operations()),  # type: ignore[union-attr]
        key=lambda op: SESSION_ENDING.index(op.label) + 1 if op.label in SESSION_ENDING else 0,
    )
    run = _bridge()
    failures: list[str] = []
    for operation in operations:
        try:
            await asyncio.to_thread(_fuzz, operation, world, run, client)
        # schemathesis reports check failures as a BaseExceptionGroup.
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}:\n{exc}")
        if world.caller is not None and operation.label not in SESSION_ENDING:
            me = await client.get("/v1/me", headers=world.caller.headers)
            assert me.status_code == 200, f"{operation.label} ended the {role}'s session"
    assert len(operations) > 50
    assert not failures, "\n\n".join(failures)


# ------------------------------------------------------------- beyond the OpenAPI shapes

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
# Well-formed sandbox events whose fields hold any JSON, plus arbitrary JSON documents.
SANDBOX_KEYS = ["id", "reference", "status", "amount", "currency", "session_id"]
sandbox_object = st.fixed_dictionaries({}, optional=dict.fromkeys(SANDBOX_KEYS, json_values))
sandbox_events = st.fixed_dictionaries(
    {
        "id": st.text() | json_values,
        "type": st.sampled_from(["session.completed", "session.failed", "refund.succeeded"])
        | st.text(max_size=80),
        "data": st.fixed_dictionaries({"session": sandbox_object, "refund": sandbox_object}),
    }
)


async def test_signed_webhooks_with_any_json_never_answer_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    """The webhook body is raw (not in the OpenAPI document): fuzz it with a valid
    signature, so the payload gets past the signature check into parsing and storage."""
    secret = psp.webhook_secret(client.app.state.settings)  # type: ignore[attr-defined]
    run = _bridge()

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES * 5)
    @given(event=sandbox_events | json_values)
    def example(event: Any) -> None:
        body = json.dumps(event).encode()
        headers = {
            psp.SIGNATURE_HEADER: signing.sign(body, secret),
            "content-type": "application/json",
        }
        response = run(client.post("/v1/webhooks/sandbox", content=body, headers=headers))
        assert response.status_code in (200, 400), (body, response.status_code, response.text)
        if response.status_code == 400:
            _assert_problem_json(response, body.decode())

    await asyncio.to_thread(example)


local_parts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=24
)
# The last one is "SHOP.example" in full-width letters (NFKC folds it).
domains = st.sampled_from(
    ["shop.example", "Shop.Example", "bücher.example", "\uff33\uff28\uff2f\uff30.example"]
)
addresses = st.emails() | st.builds("{}@{}".format, local_parts, domains)


async def test_registering_any_address_is_accepted_or_refused_never_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    """Whatever the address validator accepts must be mailable: internationalized local
    parts used to pass validation, then fail building the verification mail (a 500)."""
    run = _bridge()

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES * 2)
    @given(email=addresses)
    def example(email: str) -> None:
        body = {"email": email, "password": PASSWORD}
        response = run(client.post("/v1/auth/register", json=body))
        assert response.status_code in (202, 422), (email, response.status_code, response.text)

    await asyncio.to_thread(example)
    refused = await client.post(
        "/v1/auth/register", json={"email": "zoë@shop.example", "password": PASSWORD}
    )
    assert assert_problem(refused, 422)["code"] == "invalid_email"


async def test_a_cart_whose_total_exceeds_the_largest_amount_cannot_check_out(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    """Each price and quantity is within bounds but their sum is not (it was a 500)."""
    shop = Shop(accounts)
    vendor, customer = await shop.vendor(), await shop.customer()
    product = await shop.product(vendor, price=MAX_AMOUNT)
    added = await shop.add_to_cart(customer, product["variants"][0]["id"], 2)
    assert added.status_code == 200, added.text

    response = await shop.checkout(customer)

    assert assert_problem(response, 409)["code"] == "total_too_large"
    cart = await client.get("/v1/cart", headers=customer.headers)
    assert len(cart.json()["lines"]) == 1  # nothing was taken: the cart is left to change
