"""The account events reach merchant endpoints like any other: subscribable by name (digits
included), listed by the admin's event-types, delivered signed with the public user."""

from __future__ import annotations

import json

from standardwebhooks.webhooks import Webhook

from tests.webhooks.conftest import Hooks
from tests.webhooks.receiver import Receiver
from tillpay.accounts.schemas import UserOut

USER_EVENTS = [
    "user.registered",
    "user.email_verified",
    "user.2fa_enabled",
    "user.2fa_disabled",
    "user.password_changed",
    "user.new_login",
]


async def test_an_endpoint_can_subscribe_to_every_account_event(
    hooks: Hooks, receiver: Receiver
) -> None:
    created = await hooks.register(receiver.url, USER_EVENTS)
    assert created.status_code == 201, created.text
    assert created.json()["event_types"] == sorted(USER_EVENTS)


async def test_the_admin_event_types_list_the_account_events_with_their_details(
    hooks: Hooks,
) -> None:
    admin = await hooks.admin()
    listed = await hooks.client.get("/v1/admin/event-types", headers=admin.headers)
    assert listed.status_code == 200
    by_name = {e["name"]: e for e in listed.json()}
    for name in USER_EVENTS:
        assert by_name[name]["subject"] == "user"
        assert set(by_name[name]["example"]) == set(by_name[name]["details"])
    assert {"ip", "device", "session_id"} <= set(by_name["user.new_login"]["details"])


async def test_an_account_event_reaches_its_endpoint_signed_with_the_public_user(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["user.2fa_enabled"])
    customer = await hooks.accounts.user(totp=True)

    await hooks.flush()

    bodies = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in receiver.received]
    [body] = [b for b in bodies if b["data"]["object"]["id"] == customer.user_id]
    assert body["type"] == "user.2fa_enabled"
    assert set(body["data"]["object"]) == set(UserOut.model_fields)
    assert body["data"]["object"]["totp_enabled"] is True
    raw = json.dumps(body)
    for secret in (customer.totp_secret, *customer.recovery_codes, customer.refresh_token):
        assert secret
        assert secret not in raw
