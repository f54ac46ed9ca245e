"""Resolving a bearer credential that is not a person's access token."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.requests import HTTPConnection

from tillpay.accounts.principal import Principal
from tillpay.credentials import api_keys
from tillpay.credentials.service_tokens import ServiceTokenVerifier
from tillpay.kit.db import Database
from tillpay.kit.http._asgi import client_ip
from tillpay.settings import Settings


@dataclass
class Credentials:
    """API keys and service tokens of one application, built once by its lifespan
    (:meth:`aclose` when it ends)."""

    database: Database
    environment: str  # ``live`` or ``test``: the API-key prefix this deployment accepts
    # None when no issuer is configured: a bearer token then costs nothing more here.
    service_tokens: ServiceTokenVerifier | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        database: Database,
        *,
        jwks_transport: httpx.AsyncBaseTransport | None = None,
    ) -> Credentials:
        verifier = None
        if settings.service_token_issuers:
            verifier = ServiceTokenVerifier(
                settings.service_token_issuers, database, transport=jwks_transport
            )
        return cls(
            database=database,
            environment=api_keys.environment_of(settings.environment),
            service_tokens=verifier,
        )

    async def authenticate(self, token: str, *, request: HTTPConnection) -> Principal | None:
        if token.startswith(api_keys.PREFIX):
            return await api_keys.authenticate(
                self.database, token, environment=self.environment, ip=client_ip(request.scope)
            )
        if self.service_tokens is not None:
            return await self.service_tokens.authenticate(token, request=request)
        return None

    async def aclose(self) -> None:
        if self.service_tokens is not None:
            await self.service_tokens.aclose()
