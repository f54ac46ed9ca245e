"""The administrator 2FA rule follows the permission, not the URL prefix.

Every route that can exercise an admin-only permission (``ADMIN_ONLY``: held by no other
role) refuses an administrator whose session lacks 2FA (TOTP enrolled and used at
sign-in) with 403 ``admin_2fa_required``, and serves the same administrator after a TOTP
sign-in. Routes are walked from ``app.routes``: each is either a scenario below or listed
as exercising no admin-only power, so a new route fails the inventory until it is
classified; a route whose dependencies ask for an admin-only permission must have a
scenario; and together the scenarios cover every admin-only permission.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import app_of
from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tillpay.accounts.deps import require_permission
from tillpay.accounts.models import Role
from tillpay.accounts.permissions import ADMIN_ONLY, Permission


@dataclass
class World:
    """Other people's things an administrator may act on."""

    customer: Account
    vendor: Account
    product: dict[str, Any]
    paid_order: dict[str, Any]
    payment: dict[str, Any]
    pending_order: dict[str, Any]
    event_id: str
    endpoint_id: str = ""


Call = Callable[[httpx.AsyncClient, World, dict[str, str]], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Scenario:
    permission: Permission
    call: Call
    allowed: frozenset[int] = field(default=frozenset({200}))


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def get(path: str) -> Call:
    async def call(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
        return await c.get(path.format(w=w), headers=h)

    return call


def send(method: str, path: str, body: Any = None) -> Call:
    async def call(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
        payload = body(w) if callable(body) else body
        return await c.request(method, path.format(w=w), json=payload, headers={**h, **_key()})

    return call


P = Permission
SCENARIOS: dict[tuple[str, str], Scenario] = {
    ("GET", "/v1/admin/users"): Scenario(P.USERS_READ, get("/v1/admin/users")),
    ("PATCH", "/v1/admin/users/{user_id}"): Scenario(
        P.USERS_MANAGE,
        send("PATCH", "/v1/admin/users/{w.vendor.user_id}", {"is_active": True}),
    ),
    ("POST", "/v1/admin/users/{user_id}/sessions/revoke"): Scenario(
        P.USERS_MANAGE, send("POST", "/v1/admin/users/{w.customer.user_id}/sessions/revoke")
    ),
    ("GET", "/v1/admin/orders"): Scenario(P.ORDERS_READ_ANY, get("/v1/admin/orders")),
    ("POST", "/v1/admin/orders/{order_id}/fulfil"): Scenario(
        P.ORDERS_FULFIL, send("POST", "/v1/admin/orders/{w.paid_order[id]}/fulfil")
    ),
    ("GET", "/v1/orders/{order_id}"): Scenario(
        P.ORDERS_READ_ANY, get("/v1/orders/{w.paid_order[id]}")
    ),
    ("GET", "/v1/orders/{order_id}/events"): Scenario(
        P.ORDERS_READ_ANY, get("/v1/orders/{w.paid_order[id]}/events")
    ),
    ("POST", "/v1/orders/{order_id}/cancel"): Scenario(
        P.ORDERS_READ_ANY, send("POST", "/v1/orders/{w.pending_order[id]}/cancel")
    ),
    ("GET", "/v1/orders/{order_id}/payments"): Scenario(
        P.ORDERS_READ_ANY, get("/v1/orders/{w.paid_order[id]}/payments")
    ),
    ("GET", "/v1/payments/{payment_id}"): Scenario(
        P.ORDERS_READ_ANY, get("/v1/payments/{w.payment[id]}")
    ),
    ("GET", "/v1/payments/{payment_id}/refunds"): Scenario(
        P.ORDERS_READ_ANY, get("/v1/payments/{w.payment[id]}/refunds")
    ),
    ("POST", "/v1/payments/{payment_id}/refunds"): Scenario(
        P.REFUNDS_CREATE,
        send(
            "POST",
            "/v1/payments/{w.payment[id]}/refunds",
            {"amount": 100, "reason": "requested_by_customer"},
        ),
        frozenset({201}),
    ),
    ("GET", "/v1/payments"): Scenario(P.PAYMENTS_READ, get("/v1/payments")),
    # Headless payments are created and canceled by a shop credential only: past
    # authorization, a person (even an administrator with 2FA) is refused by the service
    # with 403 machine_credential_required.
    ("POST", "/v1/payments"): Scenario(
        P.PAYMENTS_WRITE,
        send(
            "POST",
            "/v1/payments",
            {
                "amount": 2500,
                "currency": "USD",
                "reference": "inventory-1",
                "customer": {"email": "shop@example.com"},
                "provider": "sandbox",
            },
        ),
        frozenset({403}),
    ),
    ("POST", "/v1/payments/{payment_id}/cancel"): Scenario(
        P.PAYMENTS_WRITE, send("POST", "/v1/payments/{w.payment[id]}/cancel"), frozenset({403})
    ),
    ("GET", "/v1/admin/ledger/accounts"): Scenario(
        P.LEDGER_READ_ANY, get("/v1/admin/ledger/accounts")
    ),
    ("GET", "/v1/admin/webhook-events"): Scenario(
        P.PAYMENTS_OPERATE, get("/v1/admin/webhook-events")
    ),
    ("POST", "/v1/admin/webhook-events/{event_id}/replay"): Scenario(
        P.PAYMENTS_OPERATE,
        send("POST", "/v1/admin/webhook-events/{w.event_id}/replay"),
        # The event was processed: replaying it is a conflict, but past authorization.
        frozenset({200, 409}),
    ),
    ("GET", "/v1/admin/payments"): Scenario(P.PAYMENTS_OPERATE, get("/v1/admin/payments")),
    ("POST", "/v1/admin/payments/{payment_id}/review"): Scenario(
        P.PAYMENTS_OPERATE,
        send("POST", "/v1/admin/payments/{w.payment[id]}/review", {"note": "Looked at it."}),
        # The payment was never flagged: a conflict, but past authorization.
        frozenset({409}),
    ),
    ("GET", "/v1/admin/audit-events"): Scenario(P.AUDIT_READ, get("/v1/admin/audit-events")),
    ("POST", "/v1/products"): Scenario(
        P.CATALOG_WRITE_ANY,
        send(
            "POST",
            "/v1/products",
            lambda w: {
                "title": "Platform product",
                "currency": "USD",
                "sku": f"PLAT-{uuid.uuid4().hex[:8]}",
                "price_amount": 500,
                "stock": 1,
            },
        ),
        frozenset({201}),
    ),
    ("PATCH", "/v1/products/{product_id}"): Scenario(
        P.CATALOG_WRITE_ANY,
        send("PATCH", "/v1/products/{w.product[id]}", {"title": "Renamed by an admin"}),
    ),
    ("POST", "/v1/products/{product_id}/variants"): Scenario(
        P.CATALOG_WRITE_ANY,
        send(
            "POST",
            "/v1/products/{w.product[id]}/variants",
            lambda w: {"sku": f"ADM-{uuid.uuid4().hex[:8]}", "price_amount": 700, "stock": 1},
        ),
        frozenset({201}),
    ),
    ("PATCH", "/v1/products/{product_id}/variants/{variant_id}"): Scenario(
        P.CATALOG_WRITE_ANY,
        send(
            "PATCH",
            "/v1/products/{w.product[id]}/variants/{w.product[variants][0][id]}",
            {"price_amount": 1, "stock": 0},
        ),
    ),
    ("GET", "/v1/admin/event-types"): Scenario(P.WEBHOOKS_MANAGE, get("/v1/admin/event-types")),
    ("POST", "/v1/admin/api-keys"): Scenario(
        P.API_KEYS_MANAGE,
        send("POST", "/v1/admin/api-keys", {"name": "inventory", "scopes": ["payments:read"]}),
        frozenset({201}),
    ),
    ("GET", "/v1/admin/api-keys"): Scenario(P.API_KEYS_MANAGE, get("/v1/admin/api-keys")),
    ("GET", "/v1/events"): Scenario(P.EVENTS_READ, get("/v1/events")),
    ("DELETE", "/v1/admin/api-keys/{key_id}"): Scenario(
        P.API_KEYS_MANAGE,
        # No such key: a 404, but past authorization.
        send("DELETE", "/v1/admin/api-keys/key_00000000000000000000000000"),
        frozenset({404}),
    ),
    ("POST", "/v1/admin/webhook-endpoints"): Scenario(
        P.WEBHOOKS_MANAGE,
        # A literal public address: registering checks it without resolving a name.
        send(
            "POST",
            "/v1/admin/webhook-endpoints",
            {"url": "https://93.184.215.14/hooks", "event_types": ["order.paid"]},
        ),
        frozenset({201}),
    ),
    ("GET", "/v1/admin/webhook-endpoints"): Scenario(
        P.WEBHOOKS_MANAGE, get("/v1/admin/webhook-endpoints")
    ),
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}"): Scenario(
        P.WEBHOOKS_MANAGE, get("/v1/admin/webhook-endpoints/{w.endpoint_id}")
    ),
    ("PATCH", "/v1/admin/webhook-endpoints/{endpoint_id}"): Scenario(
        P.WEBHOOKS_MANAGE,
        send("PATCH", "/v1/admin/webhook-endpoints/{w.endpoint_id}", {"description": "x"}),
    ),
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret"): Scenario(
        P.WEBHOOKS_MANAGE, send("POST", "/v1/admin/webhook-endpoints/{w.endpoint_id}/rotate-secret")
    ),
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}/deliveries"): Scenario(
        P.WEBHOOKS_MANAGE, get("/v1/admin/webhook-endpoints/{w.endpoint_id}/deliveries")
    ),
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/recover"): Scenario(
        P.WEBHOOKS_MANAGE,
        send(
            "POST",
            "/v1/admin/webhook-endpoints/{w.endpoint_id}/recover",
            {"since": "2026-01-01T00:00:00Z"},
        ),
    ),
    ("POST", "/v1/admin/webhook-endpoints/deliveries/{delivery_id}/redeliver"): Scenario(
        P.WEBHOOKS_MANAGE,
        send(
            "POST",
            "/v1/admin/webhook-endpoints/deliveries/dlv_00000000000000000000000000/redeliver",
        ),
        # No such delivery: a 404, but past authorization.
        frozenset({404}),
    ),
    # No broker in this app: a 409 no_broker, but past authorization.
    ("GET", "/v1/admin/event-hub/dead-letters"): Scenario(
        P.WEBHOOKS_MANAGE, get("/v1/admin/event-hub/dead-letters"), frozenset({409})
    ),
    ("POST", "/v1/admin/event-hub/dead-letters/replay"): Scenario(
        P.WEBHOOKS_MANAGE,
        send("POST", "/v1/admin/event-hub/dead-letters/replay", {}),
        frozenset({409}),
    ),
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/test"): Scenario(
        P.WEBHOOKS_MANAGE,
        send("POST", "/v1/admin/webhook-endpoints/{w.endpoint_id}/test"),
        frozenset({202}),
    ),
    # Last: the endpoint the scenarios above use is gone after it.
    ("DELETE", "/v1/admin/webhook-endpoints/{endpoint_id}"): Scenario(
        P.WEBHOOKS_MANAGE,
        send("DELETE", "/v1/admin/webhook-endpoints/{w.endpoint_id}"),
        frozenset({204}),
    ),
}

# The console (cookie session; bearer tokens do not reach it): every /console route
# refuses an administrator without 2FA (``test_every_console_route_refuses_an_admin_
# without_2fa`` walks them), except these, which any console user needs.
CONSOLE_ANY_USER = {
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("POST", "/console/login/code"),
    ("POST", "/console/logout"),
    ("GET", "/console/reauth"),
    ("POST", "/console/reauth"),
    ("POST", "/console/live/ticket"),  # the socket withholds the admin channel
    # One's own 2FA state and enrolment (console/security.py): where the refusal sends
    # an administrator without 2FA.
    ("GET", "/console/security"),
    ("GET", "/console/security/2fa"),
    ("POST", "/console/security/2fa"),
    ("GET", "/console/security/2fa/confirm"),
    ("POST", "/console/security/2fa/confirm"),
    ("GET", "/console/security/recovery-codes"),
    ("POST", "/console/security/recovery-codes"),
}


# Routes that cannot exercise an admin-only permission: public, self-service (one's own
# account, cart, orders, payments) or a vendor's own data, or not tillpay's API at all.
NO_ADMIN_POWER = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/assets/{name}"),  # Swagger UI files from an allow-list
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),  # bearer token of its own, no user
    ("GET", "/.well-known/jwks.json"),
    *(("POST", f"/v1/auth/{p}") for p in ("register", "verify-email", "verify-email/resend")),
    *(("POST", f"/v1/auth/{p}") for p in ("login", "login/mfa", "refresh", "logout")),
    ("GET", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions/{session_id}"),  # own sessions only
    ("POST", "/v1/auth/sessions/revoke-others"),
    *(("POST", f"/v1/auth/password/{p}") for p in ("forgot", "reset", "change")),
    ("POST", "/v1/auth/reauthenticate"),
    *(("POST", f"/v1/auth/2fa/{p}") for p in ("enroll", "confirm", "disable", "recovery-codes")),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("POST", "/v1/me/email"),
    *(
        (m, p)
        for m in ("GET", "POST")
        for p in ("/account/verify-email", "/account/reset-password", "/account/forgot-password")
    ),
    ("GET", "/v1/products"),  # the public catalog: active products only
    ("GET", "/v1/products/{product_id}"),  # inactive ones only for their own vendor
    ("GET", "/v1/vendor/products"),
    ("GET", "/v1/cart"),
    ("POST", "/v1/cart/lines"),
    ("PATCH", "/v1/cart/lines/{line_id}"),
    ("DELETE", "/v1/cart/lines/{line_id}"),
    ("DELETE", "/v1/cart"),
    ("POST", "/v1/checkout"),
    ("GET", "/v1/orders"),  # own orders
    ("GET", "/v1/vendor/orders"),
    ("GET", "/v1/payments/providers"),
    ("POST", "/v1/orders/{order_id}/payments"),  # own orders only
    ("GET", "/v1/payments/{payment_id}/return"),
    ("GET", "/v1/vendor/balance"),
    ("POST", "/v1/webhooks/{provider}"),
    ("POST", "/v1/payments/{payment_id}/razorpay/callback"),
    # The sandbox PSP's own API and hosted page (authenticated by its own keys).
    ("POST", "/sandbox/api/sessions"),
    ("GET", "/sandbox/api/sessions/by-reference/{reference}"),
    ("POST", "/sandbox/api/sessions/{session_id}/refunds"),
    ("GET", "/sandbox/api/refunds/{refund_id}"),
    ("GET", "/sandbox/checkout/{session_id}"),
    ("POST", "/sandbox/checkout/{session_id}"),
    # The demo storefront: a signed-in shopper's own cart, orders and payments.
    *(("GET", f"/shop{p}") for p in ("", "/cart", "/login", "/register", "/registered")),
    *(("GET", f"/shop/{p}") for p in ("orders/{order_id}", "orders/{order_id}/status")),
    ("GET", "/shop/products/{product_id}"),
    *(("POST", f"/shop/{p}") for p in ("login", "login/code", "logout", "register")),
    *(("POST", f"/shop/{p}") for p in ("verify/resend", "checkout", "orders/{order_id}/pay")),
    *(("POST", f"/shop/cart/lines{p}") for p in ("", "/{line_id}", "/{line_id}/remove")),
    ("GET", "/web/assets/{filename}"),  # content-hashed static files
}


def _required_permissions(dependant: Dependant) -> set[Permission]:
    found: set[Permission] = set()
    if isinstance(dependant.call, require_permission):
        found |= dependant.call.permissions
    for sub in dependant.dependencies:
        found |= _required_permissions(sub)
    return found


def _routes(client: httpx.AsyncClient) -> dict[tuple[str, str], set[Permission]]:
    routes: dict[tuple[str, str], set[Permission]] = {}
    for context in iter_route_contexts(app_of(client).routes):
        dependant = getattr(context, "dependant", None)
        required = _required_permissions(dependant) if dependant is not None else set()
        for method in context.methods or ():
            if method != "HEAD":
                routes[(method, str(context.path))] = required
    return routes


async def test_every_route_is_classified_for_the_admin_2fa_rule(
    client: httpx.AsyncClient,
) -> None:
    routes = _routes(client)
    console = {(m, p) for m, p in routes if p == "/console" or p.startswith("/console/")}
    unclassified = set(routes) - set(SCENARIOS) - NO_ADMIN_POWER - console
    assert not unclassified, f"classify these routes: {sorted(unclassified)}"
    assert not set(SCENARIOS) & NO_ADMIN_POWER
    assert set(SCENARIOS) | NO_ADMIN_POWER | CONSOLE_ANY_USER <= set(routes), (
        "a listed route no longer exists"
    )
    for key, required in routes.items():
        if required & ADMIN_ONLY:
            assert key in SCENARIOS, f"{key} asks for {required & ADMIN_ONLY}: add a scenario"
            assert SCENARIOS[key].permission in required, key


#: Admin-only permissions checked outside HTTP routes, and the test that holds each.
CHECKED_ELSEWHERE = {
    # The realtime admin channel is subscribed to over the WebSocket.
    Permission.EVENTS_READ: "tests/realtime/test_socket.py::"
    "test_an_admin_without_2fa_may_not_subscribe_to_the_admin_channel",
    # Refunding a headless payment: the refund route's scenario above is the shop-order
    # power (REFUNDS_CREATE); a person refunding a headless payment needs REFUNDS_WRITE.
    Permission.REFUNDS_WRITE: "tests/headless/test_headless_admin.py::"
    "test_an_admin_refunds_a_headless_payment_only_with_2fa",
}


def test_the_scenarios_cover_every_admin_only_permission() -> None:
    assert {s.permission for s in SCENARIOS.values()} | set(CHECKED_ELSEWHERE) == ADMIN_ONLY
    assert ADMIN_ONLY, "no admin-only permissions?"
    assert not ADMIN_ONLY & {Permission.CART_USE, Permission.CATALOG_WRITE_OWN}


async def _world(checkout: Checkout) -> World:
    shop = checkout.shop
    customer, vendor = await shop.customer(), await shop.vendor()
    product = await shop.product(vendor, price=2000, stock=5)
    paid_order, payment = await checkout.paid_order(customer)
    pending_order = await shop.order(customer)
    return World(
        customer=customer,
        vendor=vendor,
        product=product,
        paid_order=paid_order,
        payment=payment,
        pending_order=pending_order,
        event_id="",
    )


async def test_admin_only_powers_need_2fa_on_every_route(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    checkout = Checkout(Shop(accounts))
    world = await _world(checkout)
    without_2fa = await accounts.user(role=Role.ADMIN)
    with_2fa = await accounts.admin()
    events = await client.get("/v1/admin/webhook-events", headers=with_2fa.headers)
    assert events.status_code == 200, events.text
    world.event_id = events.json()[0]["id"]
    endpoint = await client.post(
        "/v1/admin/webhook-endpoints",
        json={"url": "https://93.184.215.14/hooks", "event_types": ["*"]},
        headers=with_2fa.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    world.endpoint_id = endpoint.json()["id"]

    for key, scenario in SCENARIOS.items():
        refused = await scenario.call(client, world, without_2fa.headers)
        assert refused.status_code == 403, (key, refused.status_code, refused.text)
        assert assert_problem(refused, 403)["code"] == "admin_2fa_required", key

    # Nothing the refused calls tried happened.
    refunds = await client.get(
        f"/v1/payments/{world.payment['id']}/refunds", headers=world.customer.headers
    )
    assert refunds.json() == []
    order = await client.get(
        f"/v1/orders/{world.pending_order['id']}", headers=world.customer.headers
    )
    assert order.json()["status"] == "pending_payment"

    for key, scenario in SCENARIOS.items():
        served = await scenario.call(client, world, with_2fa.headers)
        assert served.status_code in scenario.allowed, (key, served.status_code, served.text)


async def test_an_admin_without_2fa_keeps_what_every_customer_may_do(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    """The rule bites only where the admin-only permission is what grants access."""
    shop = Shop(accounts)
    admin = await accounts.user(role=Role.ADMIN)
    own = await shop.order(admin)
    for path in (f"/v1/orders/{own['id']}", f"/v1/orders/{own['id']}/events", "/v1/me"):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 200, (path, response.text)
    cancelled = await client.post(f"/v1/orders/{own['id']}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200, cancelled.text


#: Placeholder values for console path parameters: well-formed ids of nothing.
_PLACEHOLDERS = {
    "payment_id": "pay_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "order_id": "ord_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "user_id": "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "key_id": "key_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "event_id": "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "endpoint_id": "whe_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "delivery_id": "wha_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "account_id": "acc_01ARZ3NDEKTSV4RRFFQ69G5FAV",
}


async def test_every_console_route_refuses_an_admin_without_2fa(
    accounts: Accounts,
) -> None:
    """Walked from the app: a page or form the inventory does not list as for any
    console user answers 403 with the 2FA explanation, before it reads or writes."""
    admin = await accounts.user(role=Role.ADMIN)
    routes = sorted(
        (m, p)
        for m, p in _routes(accounts.client)
        if (p == "/console" or p.startswith("/console/")) and (m, p) not in CONSOLE_ANY_USER
    )
    assert len(routes) > 20
    async with browser(accounts.client) as web:
        assert (await sign_in(web, admin)).status_code == 303
        token = csrf_of((await web.get("/console/reauth")).text)
        for method, template in routes:
            path = template.format(**_PLACEHOLDERS)
            if method == "GET":
                answer = await web.get(path)
            else:
                answer = await post_form(web, path, {"csrf_token": token})
            assert answer.status_code == 403, (method, template, answer.status_code)
            assert "two-factor" in answer.text.lower(), (method, template)
            # The way out, not only "Back to the console" (which is refused too).
            assert 'href="/console/security"' in answer.text, (method, template)
