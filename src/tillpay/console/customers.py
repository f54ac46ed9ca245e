"""``/console/customers``: find people, see their account state and sessions, sign them
out everywhere, change their role.

The same permissions and services as the admin API's users routes: reading needs
``users:read`` (``GET /v1/admin/users``); signing out and role changes need
``users:manage`` and a recent sign-in (``POST …/sessions/revoke`` and ``PATCH
/v1/admin/users/{id}`` both take ``RecentPrincipal``), through
``accounts.admin.admin_revoke_sessions`` / ``admin_update_user``: the same audit entries
(``admin.sessions_revoked``, ``admin.user_updated``), effective on the person's live
tokens at once.

Step-up follows the console's convention: each POST has a GET at its path showing the
form, where ``/console/reauth`` sends the person back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from tillpay.accounts import admin as user_admin
from tillpay.accounts.deps import Runtime
from tillpay.accounts.devices import coarse_device
from tillpay.accounts.models import Role, User
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.accounts.users import get_user
from tillpay.console.common import PAGE_SIZE, CursorParam, Text, clean, cursor_key, pager
from tillpay.console.nav import page
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.errors import BadRequest
from tillpay.web.session import RecentConsolePrincipal, require_console_permission
from tillpay.web.templating import NOTICES, redirect

router = APIRouter(prefix="/console", include_in_schema=False)

UserId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
Reader = Annotated[Principal, Depends(require_console_permission(Permission.USERS_READ))]
Manager = Annotated[Principal, Depends(require_console_permission(Permission.USERS_MANAGE))]
ROLES = [r.value for r in Role]
NOTICES["sessions_revoked"] = "Signed out everywhere: every session of this account has ended."
NOTICES["role_changed"] = "Role saved. If it changed, the account's sessions ended at once."


def _role(value: str) -> Role | None:
    text = clean(value)
    if text is None:
        return None
    try:
        return Role(text)
    except ValueError:
        raise BadRequest("Choose a role from the list.", code="bad_role") from None


@router.get("/customers")
async def customer_list(
    request: Request,
    principal: Reader,
    session: ReadSession,
    q: Text = "",
    role: Text = "",
    cursor: CursorParam = "",
) -> Response:
    wanted = _role(role)
    rows = await user_admin.list_users(
        session, query=clean(q), role=wanted, after=cursor_key(cursor), limit=PAGE_SIZE
    )
    more = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    filters = {"q": q, "role": role}
    context = {
        "rows": rows[:PAGE_SIZE],
        "filters": filters,
        "roles": ROLES,
        "pager": pager("/console/customers", filters, cursor=cursor, last_key=more),
    }
    return page(request, principal, "console/customers.html", context)


async def _detail(
    request: Request,
    principal: Principal,
    session: ReadSession | DbSession,
    rt: Runtime,
    user: User,
) -> dict[str, object]:
    live = await user_admin.user_sessions(session, user.id)
    return {
        "user": user,
        "sessions": [{"row": s, "device": coarse_device(s.user_agent)} for s in live],
        "locks": await user_admin.lock_state(rt, user),
        "roles": ROLES,
        "is_self": user.id == principal.user_id,
        "can_manage": Permission.USERS_MANAGE in principal.permissions,
    }


@router.get("/customers/{user_id}")
async def customer_detail(
    request: Request, principal: Reader, session: ReadSession, rt: Runtime, user_id: UserId
) -> Response:
    user = await get_user(session, user_id)
    context = await _detail(request, principal, session, rt, user)
    return page(request, principal, "console/customer.html", context)


@router.get("/customers/{user_id}/sessions/revoke")
async def revoke_form(
    request: Request, principal: Manager, session: ReadSession, rt: Runtime, user_id: UserId
) -> Response:
    user = await get_user(session, user_id)
    context = {**await _detail(request, principal, session, rt, user), "confirm": "revoke"}
    return page(request, principal, "console/customer_confirm.html", context)


@router.post("/customers/{user_id}/sessions/revoke")
async def revoke_sessions(
    request: Request,
    principal: Manager,
    recent: RecentConsolePrincipal,
    session: DbSession,
    rt: Runtime,
    user_id: UserId,
) -> Response:
    await user_admin.admin_revoke_sessions(session, rt, principal, user_id)
    return redirect(request, f"/console/customers/{user_id}", notice="sessions_revoked")


@router.get("/customers/{user_id}/role")
async def role_form(
    request: Request, principal: Manager, session: ReadSession, rt: Runtime, user_id: UserId
) -> Response:
    user = await get_user(session, user_id)
    context = {**await _detail(request, principal, session, rt, user), "confirm": "role"}
    return page(request, principal, "console/customer_confirm.html", context)


@router.post("/customers/{user_id}/role")
async def change_role(
    request: Request,
    principal: Manager,
    recent: RecentConsolePrincipal,
    session: DbSession,
    rt: Runtime,
    user_id: UserId,
    role: Annotated[str, Form(max_length=16)],
) -> Response:
    wanted = _role(role)
    if wanted is None:
        raise BadRequest("Choose a role from the list.", code="bad_role")
    await user_admin.admin_update_user(session, rt, principal, user_id, role=wanted, is_active=None)
    return redirect(request, f"/console/customers/{user_id}", notice="role_changed")
