"""Typed configuration: environment variables prefixed ``TILLPAY_``, a ``.env`` file, and
``TILLPAY_<NAME>_FILE`` variants for secrets (Docker/Kubernetes secret files).

In production the service refuses to start with any development default, an empty or
placeholder secret, SQLite, public API docs without an explicit flag, wildcard CORS/hosts,
or any risk listed in :mod:`tillpay.settings_safety`; the error names every offending
setting. List settings take a JSON list or comma-separated values; unknown ``TILLPAY_*``
variables are logged as likely typos.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path
from typing import Any, get_origin

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tillpay.kit.config import ConfigurationError
from tillpay.settings_groups.auth import AuthSettings
from tillpay.settings_groups.commerce import CommerceSettings
from tillpay.settings_groups.database import DatabaseSettings
from tillpay.settings_groups.mail import MailSettings
from tillpay.settings_groups.merchant_webhooks import MerchantWebhookSettings
from tillpay.settings_groups.observability import ObservabilitySettings
from tillpay.settings_groups.payments import PaymentSettings
from tillpay.settings_groups.perimeter import PerimeterSettings
from tillpay.settings_groups.providers import (
    CryptomusSettings,
    PaystackSettings,
    RazorpaySettings,
    StripeSettings,
)
from tillpay.settings_groups.ratelimit import RATELIMIT_POLICY_DEFAULTS, RateLimitSettings
from tillpay.settings_groups.realtime import RealtimeSettings
from tillpay.settings_groups.redis_broker import RedisBrokerSettings
from tillpay.settings_groups.risks import AcceptedRiskSettings
from tillpay.settings_groups.runtime import DEV_SECRET_KEY, RuntimeSettings
from tillpay.settings_groups.service_tokens import ServiceTokenSettings, service_token_problems
from tillpay.settings_groups.tls import TlsSettings
from tillpay.settings_groups.web import WebSettings
from tillpay.settings_safety import OVERRIDES, env_name, production_risks

__all__ = [
    "DEV_SECRET_KEY",
    "ENV_PREFIX",
    "RATELIMIT_POLICY_DEFAULTS",
    "ConfigurationError",
    "SecretFileSource",
    "Settings",
    "load_settings",
]

ENV_PREFIX = "TILLPAY_"
#: Variables of the test harness, not settings (no typo warning for them).
_HARNESS_PREFIXES = ("TILLPAY_TEST_", "TILLPAY_FUZZ_")

logger = logging.getLogger(__name__)

_PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "dev-only", "insecure", "xxx")


def _is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return not lowered or any(marker in lowered for marker in _PLACEHOLDER_MARKERS)


class SecretFileSource(PydanticBaseSettingsSource):
    """Reads ``TILLPAY_<FIELD>_FILE`` for secret fields: the file's content is the value.

    Setting both the plain variable and its ``_FILE`` variant is refused as ambiguous.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env_name = f"{ENV_PREFIX}{field_name.upper()}"
        path = os.environ.get(f"{env_name}_FILE")
        if not path:
            return None, field_name, False
        if os.environ.get(env_name):
            raise ConfigurationError(f"{env_name} and {env_name}_FILE are both set; use one")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"{env_name}_FILE: cannot read {path!r}: {exc.strerror}"
            ) from None
        return content.rstrip("\r\n"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _is_secret_field(field):
                continue
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _is_secret_field(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation)


# One mixin per concern (tillpay.settings_groups), listed from the last group to the first:
# pydantic orders the fields from the last base to the first, and the README table follows
# that order.
class Settings(
    AcceptedRiskSettings,
    WebSettings,
    ObservabilitySettings,
    RealtimeSettings,
    MerchantWebhookSettings,
    MailSettings,
    StripeSettings,
    RazorpaySettings,
    PaystackSettings,
    CryptomusSettings,
    PaymentSettings,
    CommerceSettings,
    ServiceTokenSettings,
    AuthSettings,
    RateLimitSettings,
    PerimeterSettings,
    RedisBrokerSettings,
    DatabaseSettings,
    TlsSettings,
    RuntimeSettings,
    BaseSettings,
):
    """All of tillpay's settings. Field descriptions feed the README configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Error messages must never echo a secret that was given as input.
        hide_input_in_errors=True,
        # Lists and dicts are decoded by `_decode_collections`, which also accepts
        # `a,b` for lists and names the variable when a value is malformed.
        enable_decoding=False,
    )

    def __init__(self, **values: Any) -> None:
        # First, so that a typo is pointed out even when it makes the configuration fail.
        _warn_about_unknown_variables(self.model_config.get("env_file"))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(*_describe(exc)) from None
        except SettingsError as exc:
            raise ConfigurationError(str(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, SecretFileSource(settings_cls), env_settings, dotenv_settings)

    @field_validator("*", mode="before")
    @classmethod
    def _decode_collections(cls, value: Any, info: ValidationInfo) -> Any:
        # Text from the environment, `.env` or a `_FILE` variant: lists are a JSON list or
        # comma/newline-separated values; dicts are a JSON object.
        if not isinstance(value, str) or info.field_name is None:
            return value
        origin = get_origin(cls.model_fields[info.field_name].annotation)
        if origin is list:
            text = value.strip()
            if not text.startswith("["):
                return [
                    part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()
                ]
            return _json(text, list, 'a JSON list or comma-separated values, e.g. "a,b"')
        if origin is dict:
            return _json(value, dict, 'a JSON object, e.g. {"name": "value"}')
        return value

    @model_validator(mode="after")
    def _check_safety(self) -> Settings:
        if not self.public_base_url:
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.public_base_url = f"http://{host}:{self.port}"
        if not self.database_url.get_secret_value():
            default_db = (self.data_dir / "tillpay.db").as_posix()
            self.database_url = SecretStr(f"sqlite+aiosqlite:///{default_db}")
        problems: list[str] = []
        accepted: list[str] = []
        if "*" in self.cors_allow_origins and self.cors_allow_credentials:
            problems.append("TILLPAY_CORS_ALLOW_ORIGINS: `*` cannot be combined with credentials")
        problems.extend(service_token_problems(self))
        if len(self.secret_key.get_secret_value()) < 32:
            problems.append("TILLPAY_SECRET_KEY: must be at least 32 characters")
        if self.environment != "test":
            # Fast, weak hashing exists for test suites only.
            if self.password_hash_memory_kib < 19456:
                problems.append("TILLPAY_PASSWORD_HASH_MEMORY_KIB: at least 19456 outside tests")
            if self.password_hash_iterations < 2:
                problems.append("TILLPAY_PASSWORD_HASH_ITERATIONS: at least 2 outside tests")
        if self.environment == "production":
            problems.extend(self._production_problems())
            accepted = self._weigh_production_risks(problems)
        if problems:
            raise ConfigurationError("unsafe configuration: " + "; ".join(problems), problems)
        for message in accepted:
            logger.warning("%s", message)
        return self

    def _weigh_production_risks(self, problems: list[str]) -> list[str]:
        """Append the refused risks to ``problems``; return warnings for accepted ones."""
        accepted: list[str] = []
        used: set[str] = set()
        for risk in production_risks(self):
            if risk.override is None:
                problems.append(risk.message)
            elif getattr(self, risk.override):
                used.add(risk.override)
                accepted.append(
                    f"unsafe configuration accepted: {risk.message} "
                    f"({env_name(risk.override)}=true)"
                )
            else:
                problems.append(
                    f"{risk.message} (only if {OVERRIDES[risk.override]}: set "
                    f"{env_name(risk.override)}=true)"
                )
        for name in OVERRIDES:
            if getattr(self, name) and name not in used:
                accepted.append(
                    f"{env_name(name)}=true is not needed by this configuration; remove it"
                )
        return accepted

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        if _is_placeholder(self.secret_key.get_secret_value()):
            problems.append("TILLPAY_SECRET_KEY: empty or placeholder secret")
        if self.database_url.get_secret_value().startswith("sqlite"):
            problems.append("TILLPAY_DATABASE_URL: SQLite is not allowed in production")
        if "*" in self.cors_allow_origins:
            problems.append("TILLPAY_CORS_ALLOW_ORIGINS: `*` is not allowed in production")
        if not self.allowed_hosts or "*" in self.allowed_hosts:
            problems.append("TILLPAY_ALLOWED_HOSTS: set the real host names (no `*`)")
        if not self.public_base_url.startswith("https://"):
            problems.append("TILLPAY_PUBLIC_BASE_URL: must be https:// in production")
        if self.metrics_enabled and self.metrics_token is None:
            problems.append("TILLPAY_METRICS_TOKEN: required when metrics are enabled")
        if self.metrics_token is not None and _is_placeholder(
            self.metrics_token.get_secret_value()
        ):
            problems.append("TILLPAY_METRICS_TOKEN: empty or placeholder secret")
        if self.demo_data:
            problems.append("TILLPAY_DEMO_DATA: demo data is development-only")
        if self.smtp_host is None:
            problems.append("TILLPAY_SMTP_HOST: production mail needs an SMTP server")
        for url in self.payment_return_urls:
            if not url.startswith("https://"):
                problems.append("TILLPAY_PAYMENT_RETURN_URLS: return URLs must be https://")
                break
        if self.smtp_allow_plaintext:
            problems.append("TILLPAY_SMTP_ALLOW_PLAINTEXT: mail must use TLS in production")
        return problems

    # --- derived values -------------------------------------------------------------------------
    @property
    def docs_on(self) -> bool:
        """Docs default to on outside production; production needs an explicit `true`."""
        if self.docs_enabled is None:
            return not self.is_production
        return self.docs_enabled

    @property
    def json_logs(self) -> bool:
        if self.log_json is None:
            return self.environment != "development"
        return self.log_json

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or self.public_base_url

    @property
    def mailbox_dir(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"

    @property
    def worker_width(self) -> int:
        """How many rows a worker job handles at once: SQLite serialises its writers, and
        each in-flight row may hold a pooled connection (half the pool stays free)."""
        if self.is_sqlite:
            return 1
        return max(1, min(self.worker_concurrency, self.database_pool_size // 2))

    @property
    def shop_on(self) -> bool:
        """The demo storefront defaults to on outside production."""
        if self.shop_enabled is None:
            return not self.is_production
        return self.shop_enabled

    @property
    def return_url_prefixes(self) -> list[str]:
        """``payment_return_urls``, plus the demo shop's own pages when it is served: they
        are on this very origin (in production ``public_base_url`` is https and the shop
        is off unless enabled), so allowing them opens no redirect elsewhere."""
        if not self.shop_on:
            return self.payment_return_urls
        return [*self.payment_return_urls, f"{self.public_base_url}/shop/"]

    @property
    def sandbox_on(self) -> bool:
        if self.sandbox_enabled is None:
            return not self.is_production
        return self.sandbox_enabled


def _json(text: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, kind):
        # The message never quotes the value: it may be a secret.
        raise ValueError(f"expected {expected}")
    return value


def _known_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(env_name(name))
        if _is_secret_field(field):
            names.add(f"{env_name(name)}_FILE")
    return names


def _warn_about_unknown_variables(env_file: object) -> None:
    """Log ``TILLPAY_*`` variables that are no setting (likely typos), with a suggestion."""
    given = {name.upper() for name in os.environ}
    if isinstance(env_file, (str, Path)) and Path(env_file).is_file():
        given |= {name.upper() for name in dotenv_values(env_file)}
    known = _known_variables()
    for name in sorted(given):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(_HARNESS_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        logger.warning("%s is not a tillpay setting and is ignored%s", name, hint)


def _describe(exc: ValidationError) -> tuple[str, list[str]]:
    """One message naming every variable at fault, and each problem on its own (the
    safety check's own list kept as it is)."""
    parts: list[str] = []
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{ENV_PREFIX}{name.upper()}: {message}" if name else message)
        cause = (error.get("ctx") or {}).get("error")
        problems.extend(cause.problems if isinstance(cause, ConfigurationError) else parts[-1:])
    return "; ".join(parts), problems


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``.env``), applying ``overrides`` last."""
    return Settings(**overrides)
