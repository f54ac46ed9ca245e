"""The console's review work: the needs-review filter (and the overview's figure linking
to it), and "Mark reviewed" on a flagged payment's page, through the API's service."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from tests.accounts.helpers import Account, Accounts
from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.payments.helpers import Checkout
from tillpay.accounts.models import Role
from tillpay.audit.models import AuditEvent
from tillpay.payments.models import Payment

NOTE = "Refunded the customer by hand."


async def _admin(accounts: Accounts, web: httpx.AsyncClient) -> Account:
    admin = await accounts.user(role=Role.ADMIN, totp=True)
    assert (await sign_in(web, admin)).status_code == 303
    return admin


async def _flag_of(accounts: Accounts, payment_id: str) -> Payment:
    async with accounts.database.session() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def test_the_needs_review_filter_lists_only_flagged_payments(
    accounts: Accounts, checkout: Checkout
) -> None:
    customer = await accounts.user()
    _, flagged = await checkout.flagged_payment(customer)
    _, paid = await checkout.paid_order(customer)
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        overview = await web.get("/console")
        assert 'href="/console/payments?needs_review=1"' in overview.text
        listing = await web.get("/console/payments", params={"needs_review": "1"})
        assert listing.status_code == 200
        assert flagged["id"] in listing.text
        assert paid["id"] not in listing.text
        assert 'name="needs_review" type="checkbox" value="1" checked' in listing.text
        everything = await web.get("/console/payments")
        assert flagged["id"] in everything.text
        assert paid["id"] in everything.text
        assert (await web.get("/console/payments", params={"needs_review": "x"})).status_code == 400


async def test_mark_reviewed_is_offered_only_on_a_flagged_payment(
    accounts: Accounts, checkout: Checkout
) -> None:
    customer = await accounts.user()
    _, flagged = await checkout.flagged_payment(customer)
    _, paid = await checkout.paid_order(customer)
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        page = await web.get(f"/console/payments/{flagged['id']}")
        assert f'action="/console/payments/{flagged["id"]}/review"' in page.text
        assert "Mark reviewed" in page.text
        plain = await web.get(f"/console/payments/{paid['id']}")
        assert plain.status_code == 200
        assert "Mark reviewed" not in plain.text
        assert "/review" not in plain.text


async def test_mark_reviewed_needs_the_csrf_token(accounts: Accounts, checkout: Checkout) -> None:
    _, flagged = await checkout.flagged_payment(await accounts.user())
    path = f"/console/payments/{flagged['id']}/review"
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        refused = await post_form(web, path, {"note": NOTE})
        assert refused.status_code == 403
        forged = await post_form(web, path, {"note": NOTE, "csrf_token": "not-the-token"})
        assert forged.status_code == 403
    assert (await _flag_of(accounts, flagged["id"])).needs_review is True


async def test_mark_reviewed_clears_the_flag_with_a_notice(
    accounts: Accounts, checkout: Checkout
) -> None:
    _, flagged = await checkout.flagged_payment(await accounts.user())
    detail = f"/console/payments/{flagged['id']}"
    async with browser(accounts.client) as web:
        admin = await _admin(accounts, web)
        token = csrf_of((await web.get(detail)).text)
        done = await post_form(web, f"{detail}/review", {"note": NOTE, "csrf_token": token})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{detail}?notice=reviewed"
        after = await web.get(done.headers["location"])
        assert "Marked reviewed" in after.text
        assert "Mark reviewed<" not in after.text  # the form is gone
        assert NOTE in after.text
        assert "payment.reviewed" in after.text  # the audit trail lists it
        again = await post_form(web, f"{detail}/review", {"note": NOTE, "csrf_token": token})
        assert again.status_code == 409
        assert "does not need review" in again.text
        listing = await web.get("/console/payments", params={"needs_review": "1"})
        assert flagged["id"] not in listing.text
    stored = await _flag_of(accounts, flagged["id"])
    assert (stored.needs_review, stored.reviewed_by, stored.review_note) == (
        False,
        admin.user_id,
        NOTE,
    )
    async with accounts.database.session() as session:
        audit = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "payment.reviewed", AuditEvent.target_id == flagged["id"]
            )
        )
        assert audit == 1


async def test_an_empty_note_is_refused_and_the_flag_stays(
    accounts: Accounts, checkout: Checkout
) -> None:
    _, flagged = await checkout.flagged_payment(await accounts.user())
    detail = f"/console/payments/{flagged['id']}"
    async with browser(accounts.client) as web:
        await _admin(accounts, web)
        token = csrf_of((await web.get(detail)).text)
        for note in ("", "   "):
            refused = await post_form(web, f"{detail}/review", {"note": note, "csrf_token": token})
            assert refused.status_code in (400, 422), (note, refused.status_code)
    assert (await _flag_of(accounts, flagged["id"])).needs_review is True


async def test_a_vendor_sees_the_flag_but_may_not_clear_it(
    accounts: Accounts, checkout: Checkout
) -> None:
    vendor = await checkout.shop.vendor()
    customer = await accounts.user()
    order = await checkout.shop.order(customer, vendor)
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, "4242 4242 4242 4242")
    cancelled = await checkout.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert cancelled.status_code == 200
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    detail = f"/console/payments/{payment['id']}"
    async with browser(accounts.client) as web:
        assert (await sign_in(web, vendor)).status_code == 303
        page = await web.get(detail)
        assert page.status_code == 200
        assert "Needs review" in page.text
        assert "Mark reviewed" not in page.text
        assert "Merchant webhook deliveries" not in page.text  # endpoints are the admin's
        token = csrf_of(page.text)
        refused = await post_form(web, f"{detail}/review", {"note": NOTE, "csrf_token": token})
        assert refused.status_code == 403
    assert (await _flag_of(accounts, payment["id"])).needs_review is True
