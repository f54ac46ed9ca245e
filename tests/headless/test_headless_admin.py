"""People and headless payments: an administrator reads and refunds them (with 2FA);
nobody signed in creates one."""

from __future__ import annotations

from typing import Any

from tests.headless.helpers import ShopBackend
from tests.headless.test_headless_sandbox import _paid
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tillpay.accounts.models import Role


async def test_an_admin_refunds_a_headless_payment_only_with_2fa(
    checkout: Checkout, accounts: Any
) -> None:
    admin = await accounts.admin()
    shop = await ShopBackend.make(checkout.client, admin)
    paid = await _paid(checkout, shop)
    without_2fa = await accounts.user(role=Role.ADMIN)
    path = f"/v1/payments/{paid['id']}/refunds"
    body = {"amount": 500, "reason": "requested_by_customer"}
    refused = await checkout.client.post(
        path, json=body, headers={**without_2fa.headers, "Idempotency-Key": "adm-1"}
    )
    assert assert_problem(refused, 403)["code"] == "admin_2fa_required"
    listed = await checkout.client.get("/v1/payments", headers=without_2fa.headers)
    assert assert_problem(listed, 403)["code"] == "admin_2fa_required"
    served = await checkout.client.post(
        path, json=body, headers={**admin.headers, "Idempotency-Key": "adm-2"}
    )
    assert served.status_code == 201, served.text
    assert (await shop.get(paid["id"])).json()["amount_refunded"] == 500
    # A customer or vendor never refunds a headless payment.
    customer = await checkout.shop.customer()
    other = await checkout.client.post(
        path, json=body, headers={**customer.headers, "Idempotency-Key": "adm-3"}
    )
    assert_problem(other, 404)
