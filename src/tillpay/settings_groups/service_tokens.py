"""Service-token settings: the shop backends whose short-lived JWTs tillpay trusts
(docs/service-tokens.md)."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Every algorithm an issuer may use: asymmetric only. HS* would make the shop's secret a
#: tillpay secret too (and invite key confusion); ``none`` is no signature at all.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MERCHANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def _loopback(host: str) -> bool:
    from tillpay.settings_safety import is_local_host

    return bool(host) and not host.startswith("/") and is_local_host(host)


def _key_fits(key: object, algorithm: str) -> bool:
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm.startswith("ES"):
        return isinstance(key, ec.EllipticCurvePublicKey)
    return isinstance(key, ed25519.Ed25519PublicKey)


class ServiceTokenIssuer(BaseModel):
    """One trusted shop backend: who signs (``issuer``), for whom (``audience``), with which
    key (``jwks_url`` or ``public_key_pem``) and algorithms, acting for which merchant, and,
    optionally, the client-certificate subject its requests must come with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, max_length=500)
    audience: str = Field(min_length=1, max_length=500)
    jwks_url: str | None = Field(None, max_length=2000)
    public_key_pem: str | None = Field(None, max_length=20000)
    algorithms: tuple[str, ...] = Field(min_length=1, max_length=10)
    merchant: str = Field("default", pattern=MERCHANT_PATTERN)
    client_cert_subject: str | None = Field(None, min_length=1, max_length=1000)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unsafe = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if unsafe:
            raise ValueError(
                f"algorithms {unsafe!r} not allowed; use asymmetric ones only: "
                + ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            )
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and _loopback(parts.hostname or ""):
            return value  # development against a local shop; production refuses it
        raise ValueError("jwks_url must be https:// (http:// only to a loopback address)")

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.jwks_url is None) == (self.public_key_pem is None):
            raise ValueError(f"issuer {self.issuer!r}: set exactly one of jwks_url, public_key_pem")
        if self.public_key_pem is not None:
            try:
                key = load_pem_public_key(self.public_key_pem.encode())
            except (ValueError, TypeError):
                # Never quotes the value: a private key pasted by mistake is a secret.
                raise ValueError(
                    f"issuer {self.issuer!r}: public_key_pem is no PEM public key"
                ) from None
            unfit = [a for a in self.algorithms if not _key_fits(key, a)]
            if unfit:
                raise ValueError(f"issuer {self.issuer!r}: public_key_pem cannot verify {unfit!r}")
        return self


class ServiceTokenSettings(BaseModel):
    """Machine credentials minted by the shop's own backend."""

    service_token_issuers: list[ServiceTokenIssuer] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "Shop backends whose short-lived JWTs (service tokens) tillpay accepts as "
            "machine credentials (JSON list of `{issuer, audience, jwks_url | "
            "public_key_pem, algorithms, merchant?, client_cert_subject?}`; "
            "docs/service-tokens.md). Asymmetric algorithms only; `jwks_url` https://."
        ),
    )

    @field_validator("service_token_issuers")
    @classmethod
    def _unique_issuers(cls, value: list[ServiceTokenIssuer]) -> list[ServiceTokenIssuer]:
        names = [entry.issuer for entry in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"issuers listed twice: {duplicates!r}")
        return value


def service_token_problems(settings: Any) -> list[str]:
    """What the issuers' entries get wrong given the rest of the configuration (any
    environment): tillpay's own issuer reused, or a certificate binding without mutual
    TLS (no request would ever carry a verified certificate)."""
    problems: list[str] = []
    for entry in settings.service_token_issuers:
        if entry.issuer == settings.issuer:
            problems.append(
                f"TILLPAY_SERVICE_TOKEN_ISSUERS: {entry.issuer!r} is tillpay's own JWT issuer"
            )
        if entry.client_cert_subject is not None and settings.tls_client_ca_file is None:
            problems.append(
                f"TILLPAY_SERVICE_TOKEN_ISSUERS: {entry.issuer!r} binds tokens to a client "
                "certificate; that needs TILLPAY_TLS_CLIENT_CA_FILE (mutual TLS)"
            )
    return problems
