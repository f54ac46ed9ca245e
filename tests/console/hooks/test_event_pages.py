"""``/console/events``: dead and failing provider events, their redacted payload, and
replay through the API's own service."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from tests.accounts.helpers import Account
from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.console.hooks.conftest import dead_refund_event, submit
from tests.webhooks.conftest import Hooks
from tillpay.accounts.models import Role
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.payments.models import Refund, WebhookEvent


async def test_a_dead_event_is_listed_with_its_error_and_replayed_once_from_the_console(
    hooks: Hooks, web: httpx.AsyncClient
) -> None:
    event_id, payment = await dead_refund_event(hooks)
    listing = await web.get("/console/events")
    assert listing.status_code == 200
    assert event_id in listing.text
    assert "refund.succeeded" in listing.text
    assert "provider re-read failed: ProviderUnavailable" in listing.text
    assert f'name="event_id" value="{event_id}"' in listing.text
    token = csrf_of(listing.text)

    first = await post_form(
        web, "/console/events/replay", {"csrf_token": token, "event_id": event_id}
    )
    assert first.status_code == 303, first.text
    assert first.headers["location"] == "/console/events?state=pending&notice=replayed"
    # The same form again (a double click, a resubmission): nothing more happens.
    again = await post_form(
        web, "/console/events/replay", {"csrf_token": token, "event_id": event_id}
    )
    assert again.status_code == 409
    assert "nothing was replayed" in again.text

    assert await hooks.checkout.process_webhooks() == 1
    assert await hooks.checkout.process_webhooks() == 0
    database = hooks.checkout.app.state.database
    async with database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        assert event is not None
        assert event.status == "processed"
        refunds = await session.scalar(
            select(func.count()).select_from(Refund).where(Refund.payment_id == payment["id"])
        )
        succeeded = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "refund.succeeded")
        )
        audits = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "admin.webhook_replayed", AuditEvent.target_id == event_id)
        )
    assert (refunds, succeeded, audits) == (1, 1, 1)


async def test_the_detail_shows_the_payload_and_filters_narrow_the_list(
    hooks: Hooks, web: httpx.AsyncClient
) -> None:
    event_id, _ = await dead_refund_event(hooks)
    detail = await web.get(f"/console/events/{event_id}")
    assert detail.status_code == 200
    assert "refund.succeeded" in detail.text
    assert "Replay event" in detail.text
    assert "&#34;amount&#34;: 500" in detail.text or "&quot;amount&quot;: 500" in detail.text
    assert (await web.get("/console/events?provider=sandbox")).text.count(event_id) >= 1
    assert event_id not in (await web.get("/console/events?provider=stripe")).text
    assert event_id not in (await web.get("/console/events?state=processed")).text
    assert (await web.get("/console/events?state=bogus")).status_code == 422
    assert (await web.get("/console/events/whe_nope")).status_code == 404


def test_payload_redaction_follows_the_log_rule() -> None:
    from tillpay.console.events import redacted_payload

    shown = redacted_payload(
        '{"id": "evt_1", "data": {"client_secret": "pi_secret_abc", "card": "4242424242424242"}}'
    )
    assert "pi_secret_abc" not in shown
    assert "4242424242424242" not in shown
    assert "evt_1" in shown
    assert "not json" in redacted_payload("not json")


async def test_replay_without_the_csrf_token_is_refused(
    hooks: Hooks, web: httpx.AsyncClient
) -> None:
    event_id, _ = await dead_refund_event(hooks)
    refused = await post_form(web, "/console/events/replay", {"event_id": event_id})
    assert refused.status_code == 403
    cross_site = await post_form(
        web,
        "/console/events/replay",
        {"csrf_token": csrf_of((await web.get("/console/events")).text), "event_id": event_id},
        **{"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    async with hooks.checkout.app.state.database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        assert event is not None
        assert event.status == "dead"


@pytest.mark.parametrize("role", [Role.VENDOR, Role.CUSTOMER])
async def test_people_who_are_not_admins_are_kept_out(hooks: Hooks, role: Role) -> None:
    person = await hooks.accounts.user(role=role)
    async with browser(hooks.client) as web:
        await sign_in(web, person)
        for path in ("/console/events", "/console/webhooks", "/console/activity"):
            response = await web.get(path)
            if role is Role.VENDOR:
                assert response.status_code == 403, path
            else:  # the console is for admins and vendors: back to sign-in
                assert response.status_code in (303, 403), path
        if role is Role.VENDOR:
            overview = await web.get("/console")
            for label in ("Provider events", "Webhooks", "Activity"):
                assert label not in overview.text


async def test_an_admin_without_2fa_is_refused_where_the_api_refuses(hooks: Hooks) -> None:
    admin: Account = await hooks.accounts.user(role=Role.ADMIN)
    async with browser(hooks.client) as web:
        assert (await sign_in(web, admin)).status_code == 303
        for path, api in (
            ("/console/events", "/v1/admin/webhook-events"),
            ("/console/webhooks", "/v1/admin/webhook-endpoints"),
            ("/console/activity", "/v1/events"),
        ):
            page = await web.get(path)
            assert page.status_code == 403, path
            assert "two-factor" in page.text
            refused = await hooks.client.get(api, headers=admin.headers)
            assert refused.status_code == 403, api
            assert refused.json()["code"] == "admin_2fa_required"
        # The step-up page admits any console user; its form token opens a ticket, and
        # the socket itself withholds the admin channel.
        ticket = await submit(web, "/console/reauth", "/console/live/ticket")
        assert ticket.status_code == 200
