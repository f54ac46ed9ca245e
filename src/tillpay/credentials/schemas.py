"""Request and response bodies of the API-key admin API."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tillpay.accounts.permissions import HOUSE_MERCHANT, MERCHANT_SCOPES, Scope
from tillpay.kit.db import utcnow

MERCHANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "shop backend (production)",
                    "scopes": ["payments:read", "payments:write", "refunds:write"],
                    "merchant": "acme",
                    "allowed_ips": ["203.0.113.0/24"],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    merchant: str = Field(
        HOUSE_MERCHANT,
        pattern=MERCHANT_PATTERN,
        description="The shop the key acts for; keys of one merchant see only its payments.",
    )
    expires_at: datetime | None = None
    allowed_ips: list[str] | None = Field(
        None, min_length=1, max_length=50, description="Addresses or CIDR networks."
    )

    @model_validator(mode="after")
    def _house_scopes(self) -> ApiKeyCreate:
        wide = sorted(set(self.scopes) - MERCHANT_SCOPES)
        if self.merchant != HOUSE_MERCHANT and wide:
            raise ValueError(
                f"only the {HOUSE_MERCHANT!r} merchant's keys may hold {', '.join(wide)}: "
                "those reach every merchant's data"
            )
        return self

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must carry a time zone")
        if value <= utcnow():
            raise ValueError("must be in the future")
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item[:64]!r}") from None
        return networks


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    merchant: str
    environment: str
    hint: str = Field(description="The key's last four characters.")
    scopes: list[str]
    allowed_ips: list[str] | None
    expires_at: datetime | None
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself: shown this once, never again.")
