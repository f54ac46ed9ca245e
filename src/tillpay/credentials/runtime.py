"""Resolving a bearer credential that is not a person's access token."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from tillpay.accounts.principal import Principal
from tillpay.credentials import api_keys
from tillpay.kit.db import Database
from tillpay.kit.http._asgi import client_ip
from tillpay.settings import Settings


@dataclass
class Credentials:
    """API keys (and service tokens) of one application, built once by its lifespan."""

    database: Database
    environment: str  # ``live`` or ``test``: the API-key prefix this deployment accepts

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> Credentials:
        return cls(database=database, environment=api_keys.environment_of(settings.environment))

    async def authenticate(self, token: str, *, request: HTTPConnection) -> Principal | None:
        if token.startswith(api_keys.PREFIX):
            return await api_keys.authenticate(
                self.database, token, environment=self.environment, ip=client_ip(request.scope)
            )
        return None
