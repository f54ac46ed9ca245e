"""Admin API of API keys: create (secret shown once), list (never the secret), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from tillpay.accounts.deps import require_permission, require_recent_auth
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.credentials import api_keys
from tillpay.credentials.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from tillpay.kit.db import DbSession, ReadSession
from tillpay.kit.ids import id_pattern

router = APIRouter(prefix="/v1/admin", tags=["api keys"])

Manager = Annotated[Principal, Depends(require_permission(Permission.API_KEYS_MANAGE))]
KeyId = Annotated[str, Path(pattern=id_pattern("key"))]


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    # Minting a credential is as sensitive as a refund: a fresh authentication.
    dependencies=[Depends(require_recent_auth)],
    summary="Create an API key (its secret is shown once)",
)
async def create_key(
    body: ApiKeyCreate, principal: Manager, session: DbSession, request: Request
) -> ApiKeyCreated:
    created = await api_keys.create(
        session,
        principal.actor(),
        environment=api_keys.environment_of(request.app.state.settings.environment),
        name=body.name,
        merchant=body.merchant,
        scopes=body.scopes,
        expires_at=body.expires_at,
        allowed_ips=body.allowed_ips,
    )
    out = ApiKeyOut.model_validate(created.key)
    return ApiKeyCreated(**out.model_dump(), secret=created.secret)


@router.get("/api-keys", response_model=list[ApiKeyOut], summary="API keys (without secrets)")
async def list_keys(principal: Manager, session: ReadSession) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in await api_keys.list_keys(session)]


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key at once")
async def revoke_key(key_id: KeyId, principal: Manager, session: DbSession) -> Response:
    await api_keys.revoke(session, principal.actor(), key_id)
    return Response(status_code=204)
