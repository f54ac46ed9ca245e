"""Profile (`/v1/me`), admin user management, and access control on admin routes."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select, update

from tests.accounts.helpers import Account, Accounts, bearer, latest_token, unique_email
from tests.conftest import ClientFactory, app_of
from tests.http.test_errors import assert_problem
from tillpay.accounts.deps import VerifiedPrincipal
from tillpay.accounts.models import AuthSession, Role, User
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import utcnow
from tillpay.notifications.mail import read_mailbox

RELAXED_AUTH = {"auth": "1000/minute"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
PUBLIC_USER_FIELDS = {
    "id",
    "email",
    "email_verified",
    "role",
    "display_name",
    "totp_enabled",
    "created_at",
}


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    """Admin scenarios sign several people in; per-IP throttling is tested in test_abuse."""
    async with make_client(ratelimit_policies=RELAXED_AUTH) as c:
        yield c


async def _me(accounts: Accounts, account: Account) -> dict[str, object]:
    response = await accounts.client.get("/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _make_auth_stale(accounts: Accounts, account: Account) -> None:
    async with accounts.database.session() as session, session.begin():
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == account.session_id)
            .values(auth_time=utcnow() - timedelta(hours=1))
        )


async def _list_users(accounts: Accounts, admin: Account, **params: str | int) -> httpx.Response:
    return await accounts.client.get("/v1/admin/users", params=params, headers=admin.headers)


# ----------------------------------------------------------------------------- profile


async def test_profile_never_exposes_password_hash_or_totp_secret(accounts: Accounts) -> None:
    account = await accounts.user(totp=True)
    response = await accounts.client.get("/v1/me", headers=account.headers)
    assert set(response.json()) == PUBLIC_USER_FIELDS
    assert "$argon2" not in response.text
    assert account.totp_secret
    assert account.totp_secret not in response.text


async def test_display_name_can_be_changed(accounts: Accounts) -> None:
    account = await accounts.user()
    response = await accounts.client.patch(
        "/v1/me", json={"display_name": "Ada Lovelace"}, headers=account.headers
    )
    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada Lovelace"
    assert (await _me(accounts, account))["display_name"] == "Ada Lovelace"


async def test_protected_fields_cannot_be_set_on_the_profile(accounts: Accounts) -> None:
    account = await accounts.user(verified=False, totp=True)
    before = await _me(accounts, account)
    for payload in (
        {"role": "ADMIN"},
        {"email_verified": True},
        {"totp_enabled": False},
        {"email": unique_email()},
        {"display_name": "Mallory", "role": "ADMIN"},
    ):
        response = await accounts.client.patch("/v1/me", json=payload, headers=account.headers)
        assert_problem(response, 422)
    assert await _me(accounts, account) == before


async def test_email_change_needs_a_recent_authentication(
    accounts: Accounts, mail_dir: Path
) -> None:
    account = await accounts.user()
    await _make_auth_stale(accounts, account)
    new_email = unique_email("new")
    response = await accounts.client.post(
        "/v1/me/email", json={"new_email": new_email}, headers=account.headers
    )
    assert assert_problem(response, 401)["code"] == "step_up_required"
    assert not read_mailbox(mail_dir, to=new_email)


async def test_email_changes_only_after_the_new_address_is_verified(
    accounts: Accounts, mail_dir: Path
) -> None:
    account = await accounts.user()
    old_email, new_email = account.email, unique_email("new")
    response = await accounts.client.post(
        "/v1/me/email", json={"new_email": new_email}, headers=account.headers
    )
    assert response.status_code == 202
    assert read_mailbox(mail_dir, to=old_email, category="security_notice")
    assert (await _me(accounts, account))["email"] == old_email
    token = latest_token(mail_dir, new_email, "verify_email")
    verified = await accounts.client.post("/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 204
    assert (await _me(accounts, account))["email"] == new_email
    account.email = new_email
    assert (await accounts.login(account)).status_code == 200


# ----------------------------------------------------------------------------- admin


async def test_admin_can_search_users_by_email(accounts: Accounts) -> None:
    admin = await accounts.admin()
    needle = await accounts.register(unique_email("needle"))
    await accounts.register(unique_email("hay"))
    response = await _list_users(accounts, admin, q="NEEDLE")
    assert response.status_code == 200
    assert [item["email"] for item in response.json()["items"]] == [needle.email]


async def test_admin_can_filter_users_by_role(accounts: Accounts) -> None:
    admin = await accounts.admin()
    vendor = await accounts.register()
    await accounts.set_role(vendor, Role.VENDOR)
    await accounts.register()
    response = await _list_users(accounts, admin, role="VENDOR")
    assert [item["email"] for item in response.json()["items"]] == [vendor.email]
    assert response.json()["items"][0]["role"] == "VENDOR"


async def test_admin_user_list_pages_through_everyone_once(accounts: Accounts) -> None:
    admin = await accounts.admin()
    for _ in range(3):
        await accounts.register()
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await _list_users(accounts, admin, **params)).json()
        assert len(page["items"]) <= 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    async with accounts.database.session() as session:
        everyone = set((await session.execute(select(User.id))).scalars())
    assert len(seen) == len(set(seen)) == 4
    assert set(seen) == everyone


async def test_admin_user_list_page_size_is_capped(accounts: Accounts) -> None:
    admin = await accounts.admin()
    assert_problem(await _list_users(accounts, admin, limit=101), 422)
    assert (await _list_users(accounts, admin, limit=100)).status_code == 200


async def test_admin_user_list_rejects_a_garbage_cursor(accounts: Accounts) -> None:
    admin = await accounts.admin()
    forged = base64.urlsafe_b64encode(b"v2:' OR 1=1 --").decode()
    for cursor in ("!!not-base64!!", forged, "%00"):
        response = await _list_users(accounts, admin, cursor=cursor)
        assert assert_problem(response, 400)["code"] == "invalid_cursor"


async def test_admin_can_change_a_role_and_it_is_audited(accounts: Accounts) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    response = await accounts.client.patch(
        f"/v1/admin/users/{user.user_id}", json={"role": "VENDOR"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["role"] == "VENDOR"
    async with accounts.database.session() as session:
        event = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.action == "admin.user_updated")
            )
        ).scalar_one()
    assert event.actor_id == admin.user_id
    assert event.target_id == user.user_id
    assert event.details == {"role": {"from": "CUSTOMER", "to": "VENDOR"}}


async def test_role_change_ends_the_users_live_sessions(accounts: Accounts) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    response = await accounts.client.patch(
        f"/v1/admin/users/{user.user_id}", json={"role": "VENDOR"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert_problem(await accounts.client.get("/v1/me", headers=user.headers), 401)


async def test_admin_changes_need_a_recent_authentication(accounts: Accounts) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    await _make_auth_stale(accounts, admin)
    response = await accounts.client.patch(
        f"/v1/admin/users/{user.user_id}", json={"role": "ADMIN"}, headers=admin.headers
    )
    assert assert_problem(response, 401)["code"] == "step_up_required"
    assert (await _me(accounts, user))["role"] == "CUSTOMER"


async def test_admin_cannot_change_their_own_role(accounts: Accounts) -> None:
    admin = await accounts.admin()
    response = await accounts.client.patch(
        f"/v1/admin/users/{admin.user_id}", json={"role": "CUSTOMER"}, headers=admin.headers
    )
    assert assert_problem(response, 409)["code"] == "self_modification"
    assert (await _me(accounts, admin))["role"] == "ADMIN"


async def test_admin_cannot_set_a_users_password(accounts: Accounts) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    response = await accounts.client.patch(
        f"/v1/admin/users/{user.user_id}",
        json={"password": "an admin chosen passphrase 1"},
        headers=admin.headers,
    )
    assert_problem(response, 422)
    assert (await accounts.login(user)).status_code == 200


def _admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every admin operation the application publishes, so new routes join the sweep."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/admin")
        for method in operations
        if method in HTTP_METHODS
    ]


async def test_admin_routes_refuse_everyone_but_admins(accounts: Accounts) -> None:
    customer = await accounts.user()
    vendor = await accounts.user(role=Role.VENDOR)
    routes = _admin_routes(app_of(accounts.client))
    assert len(routes) >= 3
    callers: list[tuple[dict[str, str], int]] = [
        (customer.headers, 403),
        (vendor.headers, 403),
        ({}, 401),
        (bearer("garbage.token.value"), 401),
        (bearer(customer.refresh_token), 401),
    ]
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", customer.user_id, template)
        for headers, expected in callers:
            response = await accounts.client.request(
                method, path, json={"role": "ADMIN"}, headers=headers
            )
            assert response.status_code == expected, (method, path, headers, response.text)
    assert (await _me(accounts, customer))["role"] == "CUSTOMER"


async def test_unsupported_verbs_on_admin_user_routes_are_405(accounts: Accounts) -> None:
    admin = await accounts.admin()
    user = await accounts.user()
    for method in ("DELETE", "PUT"):
        response = await accounts.client.request(
            method, f"/v1/admin/users/{user.user_id}", json={"role": "ADMIN"}, headers=admin.headers
        )
        assert_problem(response, 405)
        assert "PATCH" in response.headers["allow"]
    assert (await _me(accounts, user))["role"] == "CUSTOMER"


def _verified_probe(app: FastAPI) -> None:
    router = APIRouter()

    @router.get("/v1/probe/verified")
    async def probe(principal: VerifiedPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    app.include_router(router)


async def test_verified_email_dependency_admits_only_verified_users(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with make_client(setup=_verified_probe) as client:
        accounts = Accounts(client, mail_dir)
        account = await accounts.user(verified=False)
        refused = await client.get("/v1/probe/verified", headers=account.headers)
        assert assert_problem(refused, 403)["code"] == "email_not_verified"
        await accounts.verify(account)
        admitted = await client.get("/v1/probe/verified", headers=account.headers)
    assert admitted.status_code == 200
    assert admitted.json() == {"user_id": account.user_id}
