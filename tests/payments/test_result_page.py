"""The shopper's result page after the provider (payments without a ``return_url``) and
the sandbox page's wording for closed checkouts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.payments.helpers import (
    DECLINED_CARD,
    GOOD_CARD,
    INSUFFICIENT_CARD,
    PENDING_CARD,
    Checkout,
)


async def _started(checkout: Checkout) -> dict[str, Any]:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer, price=2599)
    created = await checkout.pay(customer, order["id"])
    assert created.status_code == 201, created.text
    payment: dict[str, Any] = created.json()
    return payment


async def _return_page(checkout: Checkout, payment: dict[str, Any]) -> httpx.Response:
    response = await checkout.client.get(f"/v1/payments/{payment['id']}/return")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'sha256-" in csp
    return response


@pytest.mark.parametrize(
    ("card", "title", "message"),
    [
        (GOOD_CARD, "Payment received", "your payment was received"),
        (DECLINED_CARD, "Payment declined", "The card was declined."),
        (INSUFFICIENT_CARD, "Payment declined", "The card has insufficient funds."),
        (PENDING_CARD, "Payment pending", "you do not need to pay again"),
    ],
    ids=["paid", "declined", "insufficient-funds", "pending"],
)
async def test_the_result_page_tells_the_outcome(
    checkout: Checkout, card: str, title: str, message: str
) -> None:
    payment = await _started(checkout)
    submitted = await checkout.submit_card(payment, card)
    assert submitted.headers["location"].endswith(f"/v1/payments/{payment['id']}/return")
    page = (await _return_page(checkout, payment)).text
    assert f"<h1>{title}</h1>" in page
    assert message in page
    assert "25.99" in page
    assert "Thank you" not in page or title == "Payment received"


async def test_returning_without_paying_says_the_payment_is_not_completed(
    checkout: Checkout,
) -> None:
    payment = await _started(checkout)
    page = (await _return_page(checkout, payment)).text
    assert "<h1>Payment not completed</h1>" in page
    assert "Thank you" not in page


async def test_the_result_page_is_styled(checkout: Checkout) -> None:
    payment = await _started(checkout)
    await checkout.submit_card(payment, DECLINED_CARD)
    page = (await _return_page(checkout, payment)).text
    assert "<style>" in page
    assert "class='card declined'" in page


@pytest.mark.parametrize(
    ("card", "sentence"),
    [
        (GOOD_CARD, "This checkout has been paid."),
        (DECLINED_CARD, "This checkout was declined."),
        (PENDING_CARD, "The payment for this checkout is being processed."),
    ],
    ids=["paid", "declined", "processing"],
)
async def test_a_closed_sandbox_checkout_reads_as_a_sentence(
    checkout: Checkout, card: str, sentence: str
) -> None:
    payment = await _started(checkout)
    await checkout.submit_card(payment, card)
    url = payment["next_action"]["redirect_url"]
    again = await checkout.client.get(url)
    assert sentence in again.text
    assert "This checkout is " not in again.text
    resubmitted = await checkout.client.post(
        url,
        data={"card_number": GOOD_CARD},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resubmitted.status_code == 409
    assert sentence in resubmitted.text
