"""``/console/api-keys``: list, create (the secret shown once, on the page answering the
form, never again) and revoke API keys.

The same rules and services as ``credentials/routes.py``: ``api_keys:manage`` for all
three; creating needs a recent sign-in too (minting a credential is as sensitive as a
refund); the body is validated by the API's own ``ApiKeyCreate`` (house-merchant scopes,
future expiry, IP networks), and ``credentials.api_keys.create`` / ``revoke`` write the
same audit entries (``api_key.created``, ``api_key.revoked``). A revoked key is refused
on its next request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from tillpay.accounts.permissions import HOUSE_MERCHANT, MERCHANT_SCOPES, Permission, Scope
from tillpay.accounts.principal import Principal
from tillpay.console.common import parse_moment
from tillpay.console.nav import page
from tillpay.credentials import api_keys
from tillpay.credentials.schemas import ApiKeyCreate
from tillpay.kit.db import DbSession, ReadSession, utcnow
from tillpay.kit.errors import BadRequest
from tillpay.kit.ids import id_pattern
from tillpay.web import errors
from tillpay.web.session import RecentConsolePrincipal, require_console_permission
from tillpay.web.templating import NOTICES, redirect

router = APIRouter(prefix="/console", include_in_schema=False)

Manager = Annotated[Principal, Depends(require_console_permission(Permission.API_KEYS_MANAGE))]
KeyId = Annotated[str, Path(pattern=id_pattern("key"))]
NOTICES["api_key_revoked"] = "The key is revoked: it is refused from its next request on."
SCOPES = [{"value": s.value, "merchant_wide": s in MERCHANT_SCOPES} for s in sorted(Scope, key=str)]


@router.get("/api-keys")
async def key_list(request: Request, principal: Manager, session: ReadSession) -> Response:
    keys = await api_keys.list_keys(session)
    keys.sort(key=lambda k: k.revoked_at is not None)  # live keys first, stable otherwise
    return page(request, principal, "console/api_keys.html", {"keys": keys, "now": utcnow()})


def _form_page(
    request: Request, principal: Principal, values: dict[str, Any], errors_: list[str]
) -> Response:
    context = {
        "values": values,
        "errors": errors_,
        "scopes": SCOPES,
        "house": HOUSE_MERCHANT,
    }
    return page(request, principal, "console/api_key_new.html", context, 422 if errors_ else 200)


@router.get("/api-keys/new")
async def key_form(request: Request, principal: Manager) -> Response:
    values = {"name": "", "merchant": HOUSE_MERCHANT, "scopes": [], "expires_at": "", "ips": ""}
    return _form_page(request, principal, values, [])


def _messages(exc: ValidationError) -> list[str]:
    labels = {"name": "Name", "scopes": "Scopes", "merchant": "Merchant"}
    labels |= {"expires_at": "Expires", "allowed_ips": "Allowed IPs"}
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        where = labels.get(str(error["loc"][0]), "") if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{where}: {message}" if where else message)
    return found


def _validated(values: dict[str, Any]) -> ApiKeyCreate | list[str]:
    """The API's own request model from the form, or the messages to show with it."""
    networks = [n.strip() for n in values["ips"].replace(",", "\n").splitlines() if n.strip()]
    try:
        expiry = parse_moment(values["expires_at"], "Expires")
    except BadRequest as exc:
        return [exc.detail]
    try:
        return ApiKeyCreate.model_validate(
            {
                "name": values["name"].strip(),
                "merchant": values["merchant"].strip() or HOUSE_MERCHANT,
                "scopes": values["scopes"],
                "expires_at": expiry,
                "allowed_ips": networks or None,
            }
        )
    except ValidationError as exc:
        return _messages(exc)


@router.post("/api-keys/new")
async def key_create(
    request: Request,
    principal: Manager,
    recent: RecentConsolePrincipal,
    session: DbSession,
    name: Annotated[str, Form(max_length=200)] = "",
    merchant: Annotated[str, Form(max_length=100)] = HOUSE_MERCHANT,
    scopes: Annotated[list[str] | None, Form(max_length=20)] = None,
    expires_at: Annotated[str, Form(max_length=40)] = "",
    ips: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    values = {"name": name, "merchant": merchant, "scopes": scopes or [], "ips": ips}
    values["expires_at"] = expires_at
    errors.on_error(request, lambda exc: _form_page(request, principal, values, [exc.detail]))
    body = _validated(values)
    if isinstance(body, list):
        return _form_page(request, principal, values, body)
    environment = api_keys.environment_of(request.app.state.settings.environment)
    created = await api_keys.create(
        session, principal.actor(), environment=environment, name=body.name,
        merchant=body.merchant, scopes=body.scopes, expires_at=body.expires_at,
        allowed_ips=body.allowed_ips,
    )  # fmt: skip
    context = {"key": created.key, "secret": created.secret}
    return page(request, principal, "console/api_key_created.html", context, 201)


@router.post("/api-keys/{key_id}/revoke")
async def key_revoke(
    request: Request, principal: Manager, session: DbSession, key_id: KeyId
) -> Response:
    await api_keys.revoke(session, principal.actor(), key_id)
    return redirect(request, "/console/api-keys", notice="api_key_revoked")
