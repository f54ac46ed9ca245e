"""``POST /v1/admin/payments/{id}/review``: an administrator with 2FA clears a payment's
review flag once, keeping who, when and the note; audited and announced; everyone else
is refused before the payment is looked at."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tillpay.accounts.models import Role
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.payments.models import Payment

NOTE = "Refunded by hand: the order was cancelled before the capture landed."


def _path(payment_id: str) -> str:
    return f"/v1/admin/payments/{payment_id}/review"


async def _flagged(checkout: Checkout) -> dict[str, Any]:
    _, payment = await checkout.flagged_payment(await checkout.shop.customer())
    return payment


async def test_an_admin_marks_a_flagged_payment_reviewed_once(checkout: Checkout) -> None:
    payment = await _flagged(checkout)
    admin = await checkout.shop.accounts.admin()
    listed = await checkout.client.get(
        "/v1/admin/payments", params={"needs_review": "true"}, headers=admin.headers
    )
    assert payment["id"] in [p["id"] for p in listed.json()]

    done = await checkout.client.post(
        _path(payment["id"]), json={"note": f"  {NOTE} "}, headers=admin.headers
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["needs_review"] is False
    assert (body["reviewed_by"], body["review_note"]) == (admin.user_id, NOTE)
    assert body["review_reason"] == "order_not_payable"
    assert body["reviewed_at"]

    again = await checkout.client.post(
        _path(payment["id"]), json={"note": NOTE}, headers=admin.headers
    )
    assert assert_problem(again, 409)["code"] == "payment_not_flagged"
    listed = await checkout.client.get(
        "/v1/admin/payments", params={"needs_review": "true"}, headers=admin.headers
    )
    assert payment["id"] not in [p["id"] for p in listed.json()]

    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert (stored.needs_review, stored.reviewed_by, stored.review_note) == (
            False,
            admin.user_id,
            NOTE,
        )
        audit = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "payment.reviewed", AuditEvent.target_id == payment["id"]
                )
            )
        ).scalars()
        [entry] = list(audit)
        assert entry.actor_id == admin.user_id
        assert entry.details == {"reason": "order_not_payable", "note": NOTE}
        events = (
            await session.execute(
                select(OutboxEvent).where(
                    OutboxEvent.type == "payment.reviewed",
                    OutboxEvent.subject_id == payment["id"],
                )
            )
        ).scalars()
        [event] = list(events)
        details = event.payload["data"]
        assert details["reason"] == "order_not_payable"
        assert NOTE not in str(event.payload)  # the note stays in tillpay


async def test_a_payment_that_was_never_flagged_is_a_conflict(checkout: Checkout) -> None:
    _, payment = await checkout.paid_order(await checkout.shop.customer())
    admin = await checkout.shop.accounts.admin()
    refused = await checkout.client.post(
        _path(payment["id"]), json={"note": NOTE}, headers=admin.headers
    )
    assert assert_problem(refused, 409)["code"] == "payment_not_flagged"


async def test_an_unknown_payment_is_not_found(checkout: Checkout) -> None:
    admin = await checkout.shop.accounts.admin()
    missing = await checkout.client.post(
        _path("pay_01ARZ3NDEKTSV4RRFFQ69G5FAV"), json={"note": NOTE}, headers=admin.headers
    )
    assert_problem(missing, 404)


async def test_the_note_is_required_and_bounded(checkout: Checkout) -> None:
    payment = await _flagged(checkout)
    admin = await checkout.shop.accounts.admin()
    for body in ({}, {"note": ""}, {"note": "   "}, {"note": "x" * 501}, {"note": NOTE, "x": 1}):
        refused = await checkout.client.post(_path(payment["id"]), json=body, headers=admin.headers)
        assert_problem(refused, 422)
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert stored.needs_review is True


async def test_only_an_administrator_with_2fa_may_mark_reviewed(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.flagged_payment(customer)
    accounts = checkout.shop.accounts
    without_2fa = await accounts.user(role=Role.ADMIN)
    refused = await checkout.client.post(
        _path(payment["id"]), json={"note": NOTE}, headers=without_2fa.headers
    )
    assert assert_problem(refused, 403)["code"] == "admin_2fa_required"
    vendor = await checkout.shop.vendor()
    for caller in (vendor, customer):  # the customer owns the payment, still no
        denied = await checkout.client.post(
            _path(payment["id"]), json={"note": NOTE}, headers=caller.headers
        )
        assert_problem(denied, 403)
    # Refused before the payment is looked at: an unknown one is 403 too, not 404.
    unknown = await checkout.client.post(
        _path("pay_01ARZ3NDEKTSV4RRFFQ69G5FAV"), json={"note": NOTE}, headers=vendor.headers
    )
    assert_problem(unknown, 403)
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert (stored.needs_review, stored.reviewed_at) == (True, None)
        audit = await session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.action == "payment.reviewed", AuditEvent.target_id == payment["id"]
            )
        )
        assert audit is None
