"""API keys: shown once, stored hashed, scoped, revocable at once, bounded by expiry and
an IP allow-list, refused in the other environment, and named in the audit trail."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, text, update

from tests.accounts.helpers import Accounts
from tests.credentials.helpers import create_api_key, key_headers
from tests.http.test_errors import assert_problem
from tillpay.accounts.permissions import Scope
from tillpay.audit.models import AuditEvent
from tillpay.credentials import api_keys
from tillpay.credentials.models import ApiKey
from tillpay.kit.db import Database, utcnow

PUBLIC_TARGET = {"url": "https://93.184.215.14/hooks", "event_types": ["order.paid"]}


def _db(client: httpx.AsyncClient) -> Database:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    return database


async def test_a_new_key_is_shown_once_with_the_test_prefix_and_listed_without_it(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["payments:read"], merchant="acme")
    secret = created["secret"]
    assert secret.startswith("tp_test_")
    assert api_keys.well_formed(secret) == "test"
    assert created["hint"] == secret[-4:]
    listed = (await client.get("/v1/admin/api-keys", headers=admin.headers)).json()
    [row] = [k for k in listed if k["id"] == created["id"]]
    assert "secret" not in row
    assert secret not in str(listed)
    assert row["scopes"] == ["payments:read"]
    assert row["merchant"] == "acme"


async def test_only_the_secrets_hash_is_stored(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["events:read"])
    async with _db(client).read_session() as session:
        key = await session.get(ApiKey, created["id"])
        assert key is not None
        assert key.secret_hash == hashlib.sha256(created["secret"].encode()).hexdigest()
        row = (await session.execute(text("SELECT * FROM api_keys"))).mappings().one()
    assert created["secret"] not in str(dict(row))


async def test_a_key_calls_routes_its_scopes_name(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"])
    response = await client.get(
        "/v1/admin/webhook-endpoints", headers=key_headers(created["secret"])
    )
    assert response.status_code == 200, response.text
    made = await client.post(
        "/v1/admin/webhook-endpoints", json=PUBLIC_TARGET, headers=key_headers(created["secret"])
    )
    assert made.status_code == 201, made.text


async def test_a_key_without_the_routes_scope_gets_403_insufficient_scope(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["events:read"])
    response = await client.get(
        "/v1/admin/webhook-endpoints", headers=key_headers(created["secret"])
    )
    assert_problem(response, 403)
    assert response.json()["code"] == "insufficient_scope"
    assert "webhooks:manage" in response.json()["detail"]


async def test_a_key_on_a_user_only_route_gets_403_user_only(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=[s.value for s in Scope])
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/cart"),
        ("GET", "/v1/admin/users"),
        ("GET", "/v1/admin/api-keys"),  # a key never mints or lists keys
    ]:
        response = await client.request(method, path, headers=key_headers(created["secret"]))
        assert_problem(response, 403)
        assert response.json()["code"] == "user_only", (path, response.text)


async def test_a_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"])
    headers = key_headers(created["secret"])
    assert (await client.get("/v1/admin/webhook-endpoints", headers=headers)).status_code == 200
    revoked = await client.delete(f"/v1/admin/api-keys/{created['id']}", headers=admin.headers)
    assert revoked.status_code == 204
    response = await client.get("/v1/admin/webhook-endpoints", headers=headers)
    assert_problem(response, 401)
    assert response.json()["code"] == "invalid_credentials"
    again = await client.delete(f"/v1/admin/api-keys/{created['id']}", headers=admin.headers)
    assert again.status_code == 204  # idempotent
    listed = (await client.get("/v1/admin/api-keys", headers=admin.headers)).json()
    assert [k["revoked_at"] for k in listed if k["id"] == created["id"]] != [None]


async def test_an_expired_key_is_refused(client: httpx.AsyncClient, accounts: Accounts) -> None:
    admin = await accounts.admin()
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"], expires_at=soon)
    headers = key_headers(created["secret"])
    assert (await client.get("/v1/admin/webhook-endpoints", headers=headers)).status_code == 200
    async with _db(client).transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(await client.get("/v1/admin/webhook-endpoints", headers=headers), 401)


async def test_the_ip_allow_list_admits_only_its_networks(
    client: httpx.AsyncClient, accounts: Accounts, make_client: Any
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(
        client, admin, scopes=["webhooks:manage"], allowed_ips=["127.0.0.0/8", "2001:db8::1"]
    )
    headers = key_headers(created["secret"])
    assert (await client.get("/v1/admin/webhook-endpoints", headers=headers)).status_code == 200
    async with make_client(client_ip="198.51.100.7") as outsider:
        response = await outsider.get("/v1/admin/webhook-endpoints", headers=headers)
        assert_problem(response, 401)


async def test_a_live_key_is_refused_outside_production(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"])
    live = api_keys.generate("live")
    async with _db(client).transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(secret_hash=api_keys.hash_secret(live), environment="live")
        )
    response = await client.get("/v1/admin/webhook-endpoints", headers=key_headers(live))
    assert_problem(response, 401)


async def test_malformed_and_altered_keys_are_refused(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    secret = (await create_api_key(client, admin, scopes=["webhooks:manage"]))["secret"]
    flipped = secret[:20] + ("A" if secret[20] != "A" else "B") + secret[21:]
    for token in [flipped, secret[:-1], secret + "x", "tp_test_", "tp_prod_" + secret[8:]]:
        response = await client.get("/v1/admin/webhook-endpoints", headers=key_headers(token))
        assert_problem(response, 401)


async def test_use_is_recorded_as_last_used(client: httpx.AsyncClient, accounts: Accounts) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"])
    assert created["last_used_at"] is None
    await client.get("/v1/admin/webhook-endpoints", headers=key_headers(created["secret"]))
    listed = (await client.get("/v1/admin/api-keys", headers=admin.headers)).json()
    assert [k["last_used_at"] for k in listed if k["id"] == created["id"]] != [None]


async def test_audit_entries_name_the_key_that_acted(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    created = await create_api_key(client, admin, scopes=["webhooks:manage"])
    made = await client.post(
        "/v1/admin/webhook-endpoints", json=PUBLIC_TARGET, headers=key_headers(created["secret"])
    )
    assert made.status_code == 201, made.text
    async with _db(client).read_session() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.target_id == made.json()["id"])
            )
        ).all()
        minted = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "api_key.created"))
        ).all()
    assert events, "the endpoint's creation was audited"
    assert {e.actor_id for e in events} == {created["id"]}
    assert {e.actor_role for e in events} == {"api_key"}
    assert {e.details.get("credential") for e in events} == {f"api_key:{created['id']}"}
    assert [m.actor_id for m in minted] == [admin.user_id]


async def test_only_administrators_create_keys(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    customer = await accounts.user()
    response = await client.post(
        "/v1/admin/api-keys",
        json={"name": "mine", "scopes": ["payments:read"]},
        headers=customer.headers,
    )
    assert_problem(response, 403)


async def test_bad_key_requests_are_422_and_write_nothing(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    for body in [
        {"name": "x", "scopes": ["payments:everything"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["payments:read"], "allowed_ips": ["not-an-ip"]},
        {"name": "x", "scopes": ["payments:read"], "expires_at": past},
        {"name": "x", "scopes": ["payments:read"], "merchant": "Not A Slug!"},
        {"name": "", "scopes": ["payments:read"]},
        {"name": "x", "scopes": ["payments:read"], "role": "admin"},
    ]:
        response = await client.post("/v1/admin/api-keys", json=body, headers=admin.headers)
        assert_problem(response, 422)
    assert (await client.get("/v1/admin/api-keys", headers=admin.headers)).json() == []


async def test_only_the_house_merchant_holds_deployment_wide_scopes(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    admin = await accounts.admin()
    for scope in ["webhooks:manage", "events:read", "orders:read"]:
        response = await client.post(
            "/v1/admin/api-keys",
            json={"name": "x", "scopes": [scope], "merchant": "acme"},
            headers=admin.headers,
        )
        assert_problem(response, 422)
    # Even a row that claims one (written outside the API) does not get it.
    created = await create_api_key(client, admin, scopes=["payments:read"], merchant="acme")
    async with _db(client).transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(scopes=["payments:read", "webhooks:manage"])
        )
    response = await client.get(
        "/v1/admin/webhook-endpoints", headers=key_headers(created["secret"])
    )
    assert_problem(response, 403)
    assert response.json()["code"] == "insufficient_scope"
