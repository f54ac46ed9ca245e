"""``/console/webhooks``: endpoints, their secret shown once, rotation, enable/disable,
the delivery log, redelivery, recovery and test events, all through the API's services."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from tests.console.helpers import csrf_of, post_form
from tests.console.hooks.conftest import dead_refund_event, submit
from tests.webhooks.conftest import Hooks
from tests.webhooks.receiver import Receiver
from tillpay.accounts.models import AuthSession
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow
from tillpay.merchant_webhooks.models import WebhookAttempt, WebhookEndpoint

_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


async def _create(web: httpx.AsyncClient, url: str, *types: str) -> tuple[str, str]:
    """Create an endpoint through the form; (its id, the secret the answer showed)."""
    created = await submit(
        web,
        "/console/webhooks/new",
        "/console/webhooks/new",
        {"url": url, "event_types": list(types), "description": "fulfilment"},
    )
    assert created.status_code == 201, created.text
    secret = _SECRET.search(created.text)
    endpoint = re.search(r"/console/webhooks/(whe_[0-9A-Za-z]+)", created.text)
    assert secret
    assert endpoint
    return endpoint.group(1), secret.group(0)


async def test_an_endpoint_is_created_and_its_secret_is_shown_once(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, secret = await _create(web, receiver.url, "refund.succeeded", "order.paid")
    for path in ("/console/webhooks", f"/console/webhooks/{endpoint_id}"):
        page = await web.get(path)
        assert page.status_code == 200
        assert receiver.url in page.text
        assert secret not in page.text, path
        assert "whsec_" not in page.text, path
    async with hooks.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert endpoint.event_types == ["order.paid", "refund.succeeded"]
        audit = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "webhook_endpoint.created", AuditEvent.target_id == endpoint_id
            )
        )
        assert audit == 1
    # The secret shown is the one that signs.
    sent = await post_form(
        web,
        f"/console/webhooks/{endpoint_id}/test",
        {"csrf_token": csrf_of((await web.get(f"/console/webhooks/{endpoint_id}")).text)},
    )
    assert sent.status_code == 303
    await hooks.deliver()
    [request] = receiver.received
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "webhook_endpoint.test"
    assert body["data"]["details"]["endpoint_id"] == endpoint_id


async def test_a_refused_url_shows_the_form_again_with_the_reason(
    web: httpx.AsyncClient,
) -> None:
    refused = await submit(
        web,
        "/console/webhooks/new",
        "/console/webhooks/new",
        {"url": "http://127.0.0.1:1/hooks", "event_types": ["order.paid"]},
    )
    assert refused.status_code == 422
    assert "Create endpoint" in refused.text
    assert "http://127.0.0.1:1/hooks" in refused.text
    missing = await submit(web, "/console/webhooks/new", "/console/webhooks/new", {"url": "x"})
    assert missing.status_code == 422


async def test_rotating_shows_the_new_secret_once_and_both_sign_meanwhile(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, old = await _create(web, receiver.url, "*")
    rotated = await submit(
        web, f"/console/webhooks/{endpoint_id}/rotate", f"/console/webhooks/{endpoint_id}/rotate"
    )
    assert rotated.status_code == 200, rotated.text
    found = _SECRET.search(rotated.text)
    assert found
    assert found.group(0) != old
    new = found.group(0)
    assert new not in (await web.get(f"/console/webhooks/{endpoint_id}")).text
    await submit(web, f"/console/webhooks/{endpoint_id}", f"/console/webhooks/{endpoint_id}/test")
    await hooks.deliver()
    [request] = receiver.received
    Webhook(new).verify(request.body, request.headers)
    Webhook(old).verify(request.body, request.headers)


async def test_disable_then_enable(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, _ = await _create(web, receiver.url, "order.paid")
    path = f"/console/webhooks/{endpoint_id}"
    off = await submit(web, path, f"{path}/enabled", {"enabled": "false"})
    assert off.status_code == 303
    assert "notice=endpoint_disabled" in off.headers["location"]
    page = await web.get(off.headers["location"])
    assert "Endpoint disabled" in page.text
    assert ">Enable<" in page.text
    assert "Send test event" not in page.text
    # Testing a disabled endpoint is refused (the service's rule), as a page.
    refused = await post_form(web, f"{path}/test", {"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 409
    # Events no longer go to it.
    await hooks.checkout.paid_order(await hooks.checkout.shop.customer())
    await hooks.flush()
    assert receiver.received == []
    on = await submit(web, path, f"{path}/enabled", {"enabled": "true"})
    assert on.status_code == 303
    async with hooks.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert endpoint.enabled
    assert (await submit(web, path, f"{path}/enabled", {"enabled": "maybe"})).status_code == 422


async def test_replayed_refund_reaches_the_log_and_redeliver_makes_a_new_attempt(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, secret = await _create(web, receiver.url, "refund.succeeded")
    event_id, _ = await dead_refund_event(hooks)
    replayed = await submit(
        web, "/console/events", "/console/events/replay", {"event_id": event_id}
    )
    assert replayed.status_code == 303
    assert await hooks.checkout.process_webhooks() == 1
    receiver.answer(500, b"receiver is down")
    await hooks.flush()
    path = f"/console/webhooks/{endpoint_id}"
    log = await web.get(path)
    assert "refund.succeeded" in log.text
    assert "receiver is down" in log.text
    assert "HTTP 500" in log.text
    assert "&#34;type&#34;: &#34;refund.succeeded&#34;" in log.text  # the request body
    delivery_id = re.search(r"/console/webhooks/deliveries/(dlv_[0-9A-Za-z]+)/redeliver", log.text)
    assert delivery_id

    again = await post_form(
        web,
        f"/console/webhooks/deliveries/{delivery_id.group(1)}/redeliver",
        {"csrf_token": csrf_of(log.text)},
    )
    assert again.status_code == 303
    assert again.headers["location"] == f"{path}?notice=redelivered"
    await hooks.deliver()
    async with hooks.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        attempts = (
            (
                await session.execute(
                    select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
                )
            )
            .scalars()
            .all()
        )
    assert [a.status_code for a in sorted(attempts, key=lambda a: a.id)] == [500, 200]
    assert len(receiver.received) == 2
    body = Webhook(secret).verify(receiver.received[1].body, receiver.received[1].headers)
    assert body["type"] == "refund.succeeded"
    assert json.loads(receiver.received[0].body)["id"] == body["id"]
    assert (
        await post_form(
            web,
            "/console/webhooks/deliveries/dlv_00000000000000000000000000/redeliver",
            {"csrf_token": csrf_of(log.text)},
        )
    ).status_code == 404


async def test_recover_since_requeues_failed_deliveries(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, _ = await _create(web, receiver.url, "order.paid")
    await hooks.checkout.paid_order(await hooks.checkout.shop.customer())
    for _ in range(3):
        receiver.answer(503)
    start = utcnow() + timedelta(seconds=1)
    await hooks.flush(start)
    await hooks.deliver(start + timedelta(seconds=6))
    await hooks.deliver(start + timedelta(seconds=400))
    assert len(receiver.received) == 3  # failed for good
    path = f"/console/webhooks/{endpoint_id}"
    recovered = await submit(web, path, f"{path}/recover", {"since": "2020-01-01T00:00"})
    assert recovered.status_code == 303
    assert "notice=recovered" in recovered.headers["location"]
    await hooks.deliver(start + timedelta(seconds=401))
    assert len(receiver.received) == 4
    bad = await submit(web, path, f"{path}/recover", {"since": "yesterday"})
    assert bad.status_code == 422


async def test_forms_without_the_csrf_token_are_refused(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, _ = await _create(web, receiver.url, "order.paid")
    path = f"/console/webhooks/{endpoint_id}"
    for action, data in (
        ("/console/webhooks/new", {"url": receiver.url, "event_types": "order.paid"}),
        (f"{path}/rotate", {}),
        (f"{path}/enabled", {"enabled": "false"}),
        (f"{path}/test", {}),
        (f"{path}/recover", {"since": "2020-01-01T00:00"}),
    ):
        refused = await post_form(web, action, data)
        assert refused.status_code == 403, action
        assert "This form has expired" in refused.text
    async with hooks.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 1
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert endpoint.enabled
        assert endpoint.previous_secret_sealed is None


async def test_creating_and_rotating_need_a_recent_sign_in(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id, _ = await _create(web, receiver.url, "order.paid")
    async with hooks.client.app.state.database.session() as session, session.begin():  # type: ignore[attr-defined]
        await session.execute(update(AuthSession).values(auth_time=utcnow() - timedelta(days=1)))
    for path in ("/console/webhooks/new", f"/console/webhooks/{endpoint_id}/rotate"):
        form = await web.get(path)
        assert form.status_code == 303, path
        assert form.headers["location"] == f"/console/reauth?next={path}"
    # The other actions need no step-up, as in the API.
    assert (await web.get(f"/console/webhooks/{endpoint_id}")).status_code == 200
