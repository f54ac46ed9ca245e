"""A retry after a crash resumes the work its Idempotency-Key started, never starts new work.

The crash is simulated in process: the provider (the sandbox) receives the call and acts,
then the request dies before tillpay hears the answer (a ``BaseException`` nothing catches,
as a killed process would leave it). The idempotency claim is then made stale by moving its
``created_at`` back, as if the 5 minutes had passed. tests/e2e/test_crash_resume.py does the
same with a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tests.accounts.helpers import Account
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tests.payments.test_payment_flows import ALLOWED_RETURN, fetch, ledger_transactions
from tests.payments.test_refunds import refund
from tests.transport import RoutingTransport
from tillpay.kit import idempotency
from tillpay.kit.db import utcnow
from tillpay.kit.idempotency import STALE_CLAIM
from tillpay.kit.idempotency_models import IdempotencyRecord
from tillpay.ledger import service as ledger
from tillpay.payments.models import Payment, PaymentAttempt, Refund
from tillpay.payments.sync import janitor_pass
from tillpay.sandbox.models import SandboxRefund, SandboxSession


class Crash(BaseException):
    """The process died: nothing in tillpay may catch this."""


class CrashAfterForwarding(httpx.AsyncBaseTransport):
    """Forwards a matching request to the provider (which acts on it), then dies."""

    def __init__(self, inner: httpx.AsyncBaseTransport, method: str, path_suffix: str) -> None:
        self.inner, self.method, self.path_suffix = inner, method, path_suffix
        self.crashes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == self.method and request.url.path.endswith(self.path_suffix):
            await response.aread()
            self.crashes += 1
            raise Crash
        return response


@contextmanager
def crashing(checkout: Checkout, method: str, path_suffix: str) -> Iterator[CrashAfterForwarding]:
    routing: RoutingTransport = checkout.app.state.provider_transport
    original = routing.default
    crasher = CrashAfterForwarding(original, method, path_suffix)
    routing.default = crasher
    try:
        yield crasher
    finally:
        routing.default = original


async def crashed(checkout: Checkout, send: Any) -> None:
    """Send a request whose process dies during the provider call."""
    try:
        await send()
    except BaseException as exc:
        group = isinstance(exc, BaseExceptionGroup) and exc.subgroup(Crash) is not None
        if not (isinstance(exc, Crash) or group):
            raise
    else:
        pytest.fail("the request was meant to die during the provider call")


async def make_stale(checkout: Checkout, key: str) -> None:
    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(created_at=utcnow() - STALE_CLAIM - timedelta(seconds=1))
        )


async def count(checkout: Checkout, model: Any, *where: Any) -> int:
    async with checkout.app.state.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ----------------------------------------------------------------------------- refunds


async def crashed_refund(
    checkout: Checkout, amount: int = 3000
) -> tuple[Account, Account, dict[str, Any], str]:
    """A paid payment and a refund request that died after the provider refunded."""
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    key = str(uuid.uuid4())
    with crashing(checkout, "POST", "/refunds"):
        await crashed(
            checkout, lambda: refund(checkout, admin, payment["id"], key=key, amount=amount)
        )
    assert await count(checkout, SandboxRefund) == 1
    return customer, admin, payment, key


async def test_a_retry_while_the_first_refund_call_may_still_run_is_in_progress(
    checkout: Checkout,
) -> None:
    _, admin, payment, key = await crashed_refund(checkout)
    again = await refund(checkout, admin, payment["id"], key=key, amount=3000)
    assert assert_problem(again, 409)["code"] == "idempotency_in_progress"
    assert await count(checkout, Refund) == 1


async def test_a_stale_refund_retry_resumes_the_same_refund(checkout: Checkout) -> None:
    customer, admin, payment, key = await crashed_refund(checkout)
    [started] = await fetch(checkout, customer, f"/v1/payments/{payment['id']}/refunds")
    await make_stale(checkout, key)
    resumed = await refund(checkout, admin, payment["id"], key=key, amount=3000)
    assert resumed.status_code == 201, resumed.text
    assert (resumed.json()["id"], resumed.json()["status"]) == (started["id"], "succeeded")
    await janitor_pass(checkout.runtime, now=utcnow() + timedelta(hours=1))
    assert await count(checkout, Refund) == 1
    # The provider saw one refund, keyed by the same Refund id both times.
    async with checkout.app.state.database.session() as session:
        keys = (await session.execute(select(SandboxRefund.idempotency_key))).scalars().all()
        refunded = await session.scalar(select(func.sum(SandboxSession.refunded_amount)))
    assert (keys, refunded) == ([f"tillpay:{started['id']}:refund"], 3000)
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (3000, 3000)
    assert await ledger_transactions(checkout, started["id"]) == 1
    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
    replay = await refund(checkout, admin, payment["id"], key=key, amount=3000)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == started["id"]


async def test_a_stale_refund_retry_after_the_janitor_finished_reports_the_refund(
    checkout: Checkout,
) -> None:
    customer, admin, payment, key = await crashed_refund(checkout)
    await janitor_pass(checkout.runtime, now=utcnow() + timedelta(hours=1))
    await make_stale(checkout, key)
    resumed = await refund(checkout, admin, payment["id"], key=key, amount=3000)
    assert resumed.status_code == 201, resumed.text
    assert resumed.json()["status"] == "succeeded"
    assert await count(checkout, Refund) == 1
    assert await count(checkout, SandboxRefund) == 1
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (3000, 3000)


async def test_a_resumed_refund_racing_the_janitor_moves_money_once(checkout: Checkout) -> None:
    customer, admin, payment, key = await crashed_refund(checkout)
    await make_stale(checkout, key)
    resumed, _ = await asyncio.gather(
        refund(checkout, admin, payment["id"], key=key, amount=3000),
        janitor_pass(checkout.runtime, now=utcnow() + timedelta(hours=1)),
    )
    assert resumed.status_code == 201, resumed.text
    assert await count(checkout, Refund) == 1
    assert await count(checkout, SandboxRefund) == 1
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (3000, 3000)
    assert await ledger_transactions(checkout, resumed.json()["id"]) == 1


# ----------------------------------------------------------------------------- payments


async def crashed_payment(checkout: Checkout) -> tuple[Account, dict[str, Any], str]:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    key = str(uuid.uuid4())
    with crashing(checkout, "POST", "/sandbox/api/sessions"):
        await crashed(
            checkout,
            lambda: checkout.pay(customer, order["id"], key=key, return_url=ALLOWED_RETURN),
        )
    assert await count(checkout, SandboxSession) == 1
    return customer, order, key


async def test_a_retry_while_the_first_payment_call_may_still_run_is_in_progress(
    checkout: Checkout,
) -> None:
    customer, order, key = await crashed_payment(checkout)
    again = await checkout.pay(customer, order["id"], key=key, return_url=ALLOWED_RETURN)
    assert assert_problem(again, 409)["code"] == "idempotency_in_progress"


async def test_a_stale_payment_retry_resumes_the_same_payment_and_attempt(
    checkout: Checkout,
) -> None:
    customer, order, key = await crashed_payment(checkout)
    [started] = await fetch(checkout, customer, f"/v1/orders/{order['id']}/payments")
    await make_stale(checkout, key)
    resumed = await checkout.pay(customer, order["id"], key=key, return_url=ALLOWED_RETURN)
    assert resumed.status_code == 201, resumed.text
    body = resumed.json()
    assert body["id"] == started["id"]
    assert body["status"] == "requires_action"
    assert body["next_action"]["redirect_url"]
    assert await count(checkout, Payment) == 1
    assert await count(checkout, PaymentAttempt) == 1
    async with checkout.app.state.database.session() as session:
        references = (await session.execute(select(SandboxSession.reference))).scalars().all()
    assert references == [f"{started['id']}_1"]
    replay = await checkout.pay(customer, order["id"], key=key, return_url=ALLOWED_RETURN)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == started["id"]


# ----------------------------------------------------------------------------- checkout


async def test_a_checkout_retry_after_the_stale_window_returns_the_same_order(
    checkout: Checkout,
) -> None:
    shop = checkout.shop
    customer = await shop.customer()
    item = await shop.product(await shop.vendor())
    assert (await shop.add_to_cart(customer, item["variants"][0]["id"])).status_code == 200
    key = str(uuid.uuid4())
    first = await shop.checkout(customer, key=key)
    assert first.status_code == 201, first.text
    await make_stale(checkout, key)
    again = await shop.checkout(customer, key=key)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    orders = await fetch(checkout, customer, "/v1/orders")
    assert [o["id"] for o in orders["items"]] == [first.json()["id"]]


async def test_of_two_retries_racing_for_a_stale_claim_one_resumes(checkout: Checkout) -> None:
    customer, admin, payment, key = await crashed_refund(checkout)
    await make_stale(checkout, key)
    answers = await asyncio.gather(
        *(refund(checkout, admin, payment["id"], key=key, amount=3000) for _ in range(2))
    )
    fresh = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert len(fresh) == 1, [a.text for a in answers]
    [other] = [a for a in answers if a is not fresh[0]]
    assert other.status_code == 409 or other.json()["id"] == fresh[0].json()["id"], other.text
    assert await count(checkout, Refund) == 1
    assert await count(checkout, SandboxRefund) == 1
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert state["amount_refunded"] == 3000


async def test_a_stale_claim_that_remembers_nothing_is_never_rerun(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    key = str(uuid.uuid4())
    # A claim left by a request that died before recording what it created (as every
    # claim written before records remembered their resource).
    async with checkout.app.state.database.session() as session, session.begin():
        session.add(
            IdempotencyRecord(
                scope=admin.user_id,
                key=key,
                operation=f"POST /v1/payments/{payment['id']}/refunds",
                fingerprint=idempotency.fingerprint(
                    f"POST /v1/payments/{payment['id']}/refunds",
                    {"amount": 3000, "reason": "requested_by_customer"},
                ),
                created_at=utcnow() - STALE_CLAIM - timedelta(minutes=1),
                expires_at=utcnow() + idempotency.TTL,
            )
        )
    again = await refund(checkout, admin, payment["id"], key=key, amount=3000)
    assert assert_problem(again, 409)["code"] == "idempotency_in_progress"
    assert await count(checkout, Refund) == 0
