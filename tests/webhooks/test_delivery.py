"""Merchant webhooks delivered to a real local receiver: signed per Standard Webhooks
(verified with the ``standardwebhooks`` library), carrying the object's current state,
retried on the configured schedule, never following redirects."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.webhooks.conftest import Hooks
from tests.webhooks.receiver import Receiver
from tillpay.kit.db import utcnow


async def test_a_paid_order_reaches_the_endpoint_as_a_verifiable_order_paid(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    order, payment = await hooks.checkout.paid_order(customer)

    await hooks.flush()

    assert len(receiver.received) == 1
    request = receiver.received[0]
    assert request.path == "/hooks/tillpay"
    body = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert body["type"] == "order.paid"
    assert request.headers["webhook-id"] == body["id"]
    assert body["data"]["object"]["id"] == order["id"]
    assert body["data"]["object"]["status"] == "paid"
    assert body["data"]["details"]["payment_id"] == payment["id"]
    [attempt] = await hooks.attempts(endpoint["id"])
    assert attempt["status_code"] == 200
    assert attempt["error"] is None
    assert attempt["event_type"] == "order.paid"


async def test_an_endpoint_receives_only_the_types_it_subscribed_to(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.endpoint(receiver.url, ["refund.succeeded"])
    everything = await hooks.endpoint(receiver.url.replace("tillpay", "all"), ["*"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)

    await hooks.flush()

    assert {r.path for r in receiver.received} == {"/hooks/all"}
    types = {json.loads(r.body)["type"] for r in receiver.received}
    # "*" also carries the accounts' own events (the vendor's and customer's user.*).
    assert {t for t in types if not t.startswith("user.")} == {"order.paid", "payment.succeeded"}
    assert "user.registered" in types
    for request in receiver.received:
        Webhook(everything["secret"]).verify(request.body, request.headers)


async def test_a_late_retry_carries_the_current_state_not_the_one_at_the_event(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    order, _ = await hooks.checkout.paid_order(customer)
    receiver.answer(500)
    await hooks.flush()
    admin = await hooks.admin()
    fulfilled = await hooks.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=admin.headers
    )
    assert fulfilled.status_code == 200, fulfilled.text

    await hooks.deliver(utcnow() + timedelta(seconds=6))

    assert len(receiver.received) == 2
    retried = Webhook(endpoint["secret"]).verify(
        receiver.received[1].body, receiver.received[1].headers
    )
    assert retried["type"] == "order.paid"
    assert retried["data"]["object"]["status"] == "fulfilled"
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]


async def test_a_failing_receiver_is_retried_on_the_schedule_then_the_delivery_fails(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    for _ in range(3):
        receiver.answer(500, b"receiver broke")
    # The worker's clock, a moment after the relay makes the delivery (due at once).
    start = utcnow() + timedelta(seconds=1)

    await hooks.flush(start)  # attempt 1 at once (schedule [0, 5, 300])
    await hooks.deliver(start + timedelta(seconds=4))  # not due yet
    assert len(receiver.received) == 1
    await hooks.deliver(start + timedelta(seconds=6))  # attempt 2
    await hooks.deliver(start + timedelta(seconds=6 + 200))  # not due yet
    assert len(receiver.received) == 2
    await hooks.deliver(start + timedelta(seconds=6 + 301))  # attempt 3: the last
    await hooks.deliver(start + timedelta(days=30))  # nothing is left to send
    assert len(receiver.received) == 3

    attempts = await hooks.attempts(endpoint["id"])
    assert [a["status_code"] for a in attempts] == [500, 500, 500]
    assert {a["error"] for a in attempts} == {"HTTP 500"}
    assert attempts[0]["response_excerpt"] == "receiver broke"
    delivery_id = attempts[0]["delivery_id"]
    assert {a["delivery_id"] for a in attempts} == {delivery_id}

    admin = await hooks.admin()
    again = await hooks.client.post(
        f"/v1/admin/webhook-endpoints/deliveries/{delivery_id}/redeliver", headers=admin.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "pending"
    await hooks.deliver()
    assert len(receiver.received) == 4
    assert (await hooks.attempts(endpoint["id"]))[0]["status_code"] == 200


async def test_recover_redelivers_every_failed_delivery_since_a_time(
    make_client, clean_db: None, receiver: Receiver, mail_dir
) -> None:
    from tests.webhooks.conftest import webhook_settings

    async with make_client(**webhook_settings(receiver, webhooks_retry_schedule=[0])) as client:
        hooks = Hooks(client, mail_dir)
        endpoint = await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
        customer = await hooks.checkout.shop.customer()
        await hooks.checkout.paid_order(customer)
        receiver.answer(503)
        receiver.answer(503)
        before = utcnow() - timedelta(minutes=1)
        await hooks.flush()
        assert len(receiver.received) == 2
        assert all(a["status_code"] == 503 for a in await hooks.attempts(endpoint["id"]))

        admin = await hooks.admin()
        recovered = await client.post(
            f"/v1/admin/webhook-endpoints/{endpoint['id']}/recover",
            json={"since": before.isoformat()},
            headers=admin.headers,
        )
        assert recovered.status_code == 200, recovered.text
        assert recovered.json() == {"redelivered": 2}
        await hooks.deliver()

    assert len(receiver.received) == 4
    assert {json.loads(r.body)["type"] for r in receiver.received[2:]} == {
        "order.paid",
        "payment.succeeded",
    }


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    make_client, clean_db: None, receiver: Receiver, mail_dir
) -> None:
    from tests.webhooks.conftest import webhook_settings

    async with make_client(**webhook_settings(receiver, webhooks_timeout_seconds=0.3)) as client:
        hooks = Hooks(client, mail_dir)
        endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
        customer = await hooks.checkout.shop.customer()
        await hooks.checkout.paid_order(customer)
        receiver.answer(200, b"", delay=1.0)
        await hooks.flush()
        [attempt] = await hooks.attempts(endpoint["id"])

    assert attempt["error"] == "timeout"
    assert attempt["status_code"] is None


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    receiver.location = "http://169.254.169.254/latest/meta-data/"
    receiver.answer(302)
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)

    await hooks.flush()

    assert len(receiver.received) == 1
    [attempt] = await hooks.attempts(endpoint["id"])
    assert attempt["status_code"] == 302
    assert attempt["error"] == "HTTP 302"


async def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
    admin = await hooks.admin()
    rotated = await hooks.client.post(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=admin.headers
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    assert rotated.json()["previous_expires_at"] is not None
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)

    await hooks.flush()

    request = receiver.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)


async def test_the_secret_is_shown_once_and_stored_sealed(hooks: Hooks, receiver: Receiver) -> None:
    from sqlalchemy import select

    from tillpay.merchant_webhooks.models import WebhookEndpoint

    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    assert endpoint["secret"].startswith("whsec_")
    admin = await hooks.admin()
    shown = await hooks.client.get(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers
    )
    listed = await hooks.client.get("/v1/admin/webhook-endpoints", headers=admin.headers)
    assert "secret" not in shown.json()
    assert all("secret" not in item for item in listed.json())
    database = hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session:
        row = (await session.execute(select(WebhookEndpoint))).scalar_one()
    assert endpoint["secret"].encode() not in row.secret_sealed
    assert endpoint["secret"][6:].encode() not in row.secret_sealed


async def test_a_disabled_endpoint_is_sent_nothing(hooks: Hooks, receiver: Receiver) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.relay()  # the delivery exists, then the endpoint is switched off
    admin = await hooks.admin()
    off = await hooks.client.patch(
        f"/v1/admin/webhook-endpoints/{endpoint['id']}",
        json={"enabled": False},
        headers=admin.headers,
    )
    assert off.json()["enabled"] is False
    await hooks.checkout.paid_order(customer)

    await hooks.flush()

    assert receiver.received == []


async def test_a_forged_or_tampered_delivery_does_not_verify(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.flush()
    request = receiver.received[0]

    tampered = request.body.replace(b'"paid"', b'"refunded"')
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(tampered, request.headers)
    other = await hooks.endpoint(receiver.url, ["order.paid"])
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(request.body, request.headers)


async def test_two_delivery_runs_at_once_send_each_event_once(
    hooks: Hooks, receiver: Receiver, backend: str
) -> None:
    await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
    customer = await hooks.checkout.shop.customer()
    for _ in range(4):
        await hooks.checkout.paid_order(customer)
    await hooks.relay()

    await asyncio.gather(hooks.deliver(), hooks.deliver(), hooks.deliver())

    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 8  # four order.paid, four payment.succeeded
    assert len(set(ids)) == 8


async def test_a_claim_left_by_a_killed_worker_is_taken_over_when_its_lease_lapses(
    hooks: Hooks, receiver: Receiver
) -> None:
    from tillpay.events import dispatch
    from tillpay.merchant_webhooks import delivery, service

    await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.relay()
    now = utcnow()
    # A worker claims the delivery and dies before sending it.
    claimed = await dispatch.claim(
        hooks.context().database,
        consumer_prefix=service.CONSUMER_PREFIX,
        now=now,
        limit=10,
        lease=delivery.CLAIM_LEASE,
    )
    assert len(claimed) == 1

    await hooks.deliver(now + timedelta(seconds=30))  # still leased
    assert receiver.received == []
    await hooks.deliver(now + delivery.CLAIM_LEASE + timedelta(seconds=1))
    assert len(receiver.received) == 1


async def test_events_committed_while_no_relay_ran_are_all_delivered_later(
    hooks: Hooks, receiver: Receiver
) -> None:
    """The dispatcher stopped between the commit and the dispatch: nothing is lost."""
    await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    for _ in range(3):
        await hooks.checkout.paid_order(customer)
    await hooks.deliver()  # no relay has run: nothing to deliver yet
    assert receiver.received == []

    await hooks.flush()
    await hooks.flush()  # a second pass finds nothing new

    assert len(receiver.received) == 3


async def test_an_endpoint_failing_for_days_is_disabled_and_the_admins_are_told(
    make_client, clean_db: None, receiver: Receiver, mail_dir
) -> None:
    from tests.webhooks.conftest import webhook_settings
    from tillpay.customer_mail import jobs as mail_jobs
    from tillpay.notifications.mail import read_mailbox

    settings = webhook_settings(
        receiver, webhooks_retry_schedule=[0, 3600, 3600, 3600], webhooks_disable_after_hours=2
    )
    async with make_client(**settings) as client:
        hooks = Hooks(client, mail_dir)
        endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
        watcher = await hooks.endpoint(receiver.url.replace("tillpay", "watcher"), ["*"])
        customer = await hooks.checkout.shop.customer()
        await hooks.checkout.paid_order(customer)
        for _ in range(3):
            receiver.answer(500, path="/hooks/tillpay")
        start = utcnow() + timedelta(seconds=1)

        await hooks.flush(start)
        await hooks.deliver(start + timedelta(hours=1, seconds=1))
        admin = await hooks.admin()
        shown = await client.get(
            f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers
        )
        assert shown.json()["enabled"] is True
        assert shown.json()["failing_since"] is not None
        await hooks.deliver(start + timedelta(hours=2, seconds=2))  # 2 h of failures

        shown = await client.get(
            f"/v1/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers
        )
        assert shown.json()["enabled"] is False
        assert shown.json()["disabled_reason"] == "failing"
        # The event reaches the other endpoints and the admins' mailbox.
        await hooks.relay()
        await hooks.deliver(start + timedelta(hours=2, seconds=3))
        await mail_jobs.send_due(hooks.context(), now=start + timedelta(hours=2, seconds=3))
        notices = [
            json.loads(r.body)
            for r in receiver.received
            if r.path == "/hooks/watcher"
            and json.loads(r.body)["type"] == "webhook_endpoint.disabled"
        ]
        assert len(notices) == 1
        assert notices[0]["data"]["details"]["endpoint_id"] == endpoint["id"]
        [mail] = read_mailbox(mail_dir, to=admin.email, category="endpoint_disabled")
        assert endpoint["id"] in str(mail["Subject"])

        back = await client.patch(
            f"/v1/admin/webhook-endpoints/{endpoint['id']}",
            json={"enabled": True},
            headers=admin.headers,
        )
        assert back.json()["disabled_reason"] is None
        assert back.json()["failing_since"] is None
    assert watcher["id"] != endpoint["id"]


async def test_a_success_ends_the_failure_streak(hooks: Hooks, receiver: Receiver) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    receiver.answer(500)
    start = utcnow() + timedelta(seconds=1)
    await hooks.flush(start)
    admin = await hooks.admin()
    url = f"/v1/admin/webhook-endpoints/{endpoint['id']}"
    assert (await hooks.client.get(url, headers=admin.headers)).json()["failing_since"]

    await hooks.deliver(start + timedelta(seconds=6))

    assert (await hooks.client.get(url, headers=admin.headers)).json()["failing_since"] is None
