"""Typed configuration: environment variables prefixed ``TILLPAY_``, a ``.env`` file, and
``TILLPAY_<NAME>_FILE`` variants for secrets (Docker/Kubernetes secret files).

In production the service refuses to start with any development default, an empty or
placeholder secret, SQLite, public API docs without an explicit flag, or wildcard CORS/hosts;
the error names every offending setting.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

if TYPE_CHECKING:
    from tillpay.notifications.mail import Mailer

ENV_PREFIX = "TILLPAY_"

#: Development-only secret. Production refuses to start while it (or any other
#: placeholder) is configured.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0000000000"  # noqa: S105
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "dev-only", "insecure", "xxx")


class ConfigurationError(ValueError):
    """Raised when the configuration is unsafe or inconsistent; names the settings at fault."""


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


class Settings(BaseSettings):
    """All of tillpay's settings. Field descriptions feed the README configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Error messages must never echo a secret that was given as input.
        hide_input_in_errors=True,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None

    # --- runtime -------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = Field(
        "development", description="`development`, `test` or `production` (strict checks)."
    )
    host: str = Field("127.0.0.1", description="Address `tillpay serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `tillpay serve` listens on.")
    public_base_url: str = Field(
        "",
        description="Public URL of this service for links (emails, provider return URLs); "
        "default `http://HOST:PORT`.",
    )
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET_KEY),
        description="Server secret (≥ 32 chars) for HMAC-derived values. Has a `_FILE` variant.",
    )
    data_dir: Path = Field(Path("var"), description="Directory for SQLite, mail and keys.")
    demo_data: bool = Field(
        False, description="Load demo data at start (`tillpay dev` turns it on)."
    )
    worker_in_process: bool = Field(
        True, description="Run the background worker inside the API process."
    )

    # --- database -------------------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///var/tillpay.db"),
        description="SQLAlchemy URL: `sqlite+aiosqlite:///…` or `postgresql+asyncpg://…`.",
    )
    database_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL pool size.")
    database_max_overflow: int = Field(10, ge=0, le=200, description="Extra connections.")
    database_pool_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a pooled connection."
    )
    database_statement_timeout_ms: int = Field(
        15000, ge=0, description="PostgreSQL `statement_timeout` per connection (0 = none)."
    )
    database_ssl_mode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        "disable",
        description="TLS to PostgreSQL: `disable`, `require`, `verify-ca`, `verify-full`.",
    )
    database_ssl_root_cert: Path | None = Field(
        None, description="CA bundle for verifying the PostgreSQL server certificate."
    )
    database_ssl_cert: Path | None = Field(None, description="Client certificate (PEM).")
    database_ssl_key: Path | None = Field(None, description="Client private key (PEM).")
    database_ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client key. Has a `_FILE` variant."
    )

    # --- redis and broker -------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        None, description="Redis URL; enables shared rate limits and caches when set."
    )
    redis_key_prefix: str = Field(
        "tillpay",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key tillpay writes (several deployments or test "
        "runs can share one Redis).",
    )
    broker_url: SecretStr | None = Field(
        None, description="AMQP URL of RabbitMQ; checked by `/readyz` when set."
    )

    # --- HTTP perimeter -------------------------------------------------------------------
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host header allow-list (JSON list). `*` is refused in production.",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (JSON list of `https://shop.example`).",
    )
    cors_allow_credentials: bool = Field(False, description="Allow credentialed CORS requests.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="IPs/CIDRs whose `X-Forwarded-For/Proto` and `X-Request-ID` are trusted.",
    )
    hsts_max_age: int = Field(
        63072000, ge=31536000, description="HSTS max-age in seconds (at least one year)."
    )
    body_limit_bytes: int = Field(
        102400, ge=1024, description="Maximum request body size for JSON routes (bytes)."
    )
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/webhooks/": 262144, "/sandbox/": 16384, "/account/": 16384},
        description='Per route-group limits by path prefix, e.g. `{"/v1/webhooks": 262144}`.',
    )

    # --- rate limiting ------------------------------------------------------------------------
    ratelimit_enabled: bool = Field(True, description="Turn rate limiting on or off.")
    ratelimit_global: str = Field(
        "600/minute", description="Per-IP limit on every request (`limits` notation)."
    )
    ratelimit_policies: dict[str, str] = Field(
        default_factory=lambda: {
            "auth": "10/minute;50/hour",
            "payments": "30/minute",
            "webhooks": "1200/minute",
        },
        description="Named per-route policies (JSON object of name → `limits` notation).",
    )
    ratelimit_redis_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=10,
        description="Redis timeout for rate-limit checks; after a failure Redis is skipped for 1 s.",
    )
    ratelimit_fail_open: bool = Field(
        False,
        description="When Redis is unreachable: `true` lets requests through, `false` answers 429.",
    )

    # --- authentication -----------------------------------------------------------------------
    jwt_issuer: str | None = Field(
        None, description="`iss` of access tokens; defaults to the public base URL."
    )
    jwt_audience: str = Field("tillpay-api", description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(
        900, ge=60, le=3600, description="Access-token lifetime (seconds)."
    )
    mfa_token_ttl_seconds: int = Field(
        300, ge=60, le=900, description="Lifetime of the 2FA-pending login token (seconds)."
    )
    session_absolute_ttl_seconds: int = Field(
        7 * 86400, ge=3600, description="Absolute lifetime of a login session (seconds)."
    )
    session_idle_timeout_seconds: int = Field(
        86400, ge=300, description="A session unused for this long cannot refresh (seconds)."
    )
    refresh_cookie_enabled: bool = Field(
        False, description="Also deliver refresh tokens in a `__Host-` cookie for browsers."
    )
    email_verification_ttl_seconds: int = Field(
        86400, ge=600, description="Lifetime of email verification links (seconds)."
    )
    password_reset_ttl_seconds: int = Field(
        1800, ge=300, le=7200, description="Lifetime of password reset links (seconds)."
    )
    password_min_length: int = Field(
        12, ge=8, le=64, description="Minimum password length (never below 8)."
    )
    step_up_max_age_seconds: int = Field(
        600, ge=60, le=3600, description="How recent authentication must be for sensitive actions."
    )
    admin_require_2fa: bool = Field(
        True, description="Admin routes need an account with 2FA and a 2FA login."
    )
    login_lockout_threshold: int = Field(
        5, ge=1, le=100, description="Failed logins per account before back-off lockout starts."
    )
    login_lockout_base_seconds: int = Field(
        30, ge=1, description="First lockout; doubles with every further failure."
    )
    login_lockout_max_seconds: int = Field(3600, ge=1, description="Longest lockout.")
    password_hash_memory_kib: int = Field(
        19456, ge=19456, description="Argon2id memory cost (KiB); OWASP minimum 19456."
    )
    password_hash_iterations: int = Field(2, ge=2, description="Argon2id time cost.")

    # --- commerce ---------------------------------------------------------------------------------
    reservation_ttl_seconds: int = Field(
        900, ge=60, le=86400, description="How long checkout holds stock awaiting payment."
    )
    cart_line_max_quantity: int = Field(
        100, ge=1, le=999, description="Largest quantity of one item in a cart line."
    )

    # --- payments ---------------------------------------------------------------------------------
    payment_return_urls: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000/", "http://127.0.0.1:3000/"],
        description="Allowed shop return URL prefixes (JSON list); anything else is refused.",
    )
    vendor_refunds_enabled: bool = Field(
        False, description="Let a vendor refund payments whose every line is theirs."
    )
    provider_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Timeout of one call to a payment provider."
    )
    janitor_unknown_schedule: list[int] = Field(
        default_factory=lambda: [300, 3600, 86400],
        description="Seconds between re-polls of `unknown` attempts (last value repeats).",
    )
    janitor_pending_schedule: list[int] = Field(
        default_factory=lambda: [900, 3600, 86400],
        description="Seconds between re-polls of `requires_action`/`processing` attempts.",
    )
    sandbox_enabled: bool | None = Field(
        None, description="The built-in sandbox provider; default on except in production."
    )
    sandbox_api_base: str | None = Field(
        None, description="Where the sandbox adapter reaches the sandbox; default public URL."
    )
    sandbox_secret_key: SecretStr | None = Field(
        None, description="Sandbox API key (derived from the secret key when unset)."
    )
    sandbox_webhook_secret: SecretStr | None = Field(
        None, description="Sandbox webhook signing secret (derived when unset)."
    )
    sandbox_settle_seconds: int = Field(
        60, ge=0, description="When the 'pending' test card settles as paid (seconds)."
    )
    sandbox_late_webhook_seconds: int = Field(
        5, ge=0, description="Delay of the 'late and twice' test card's webhooks (seconds)."
    )

    # --- cryptomus ------------------------------------------------------------------------------
    cryptomus_merchant_id: str | None = Field(
        None, description="Cryptomus merchant UUID (the `merchant` header); enables Cryptomus."
    )
    cryptomus_payment_api_key: SecretStr | None = Field(
        None,
        description="Cryptomus PAYMENT API key: signs requests and verifies webhooks.",
    )
    cryptomus_api_base: str = Field(
        "https://api.cryptomus.com", description="Cryptomus API base URL."
    )
    cryptomus_currencies: list[str] = Field(
        default_factory=lambda: ["EUR", "USD"],
        description="Currencies Cryptomus invoices are priced in (JSON list of codes).",
    )
    cryptomus_invoice_lifetime_seconds: int | None = Field(
        None,
        ge=300,
        le=43200,
        description="Invoice lifetime (300 to 43200 s); default: the reservation TTL, at least 300.",
    )
    cryptomus_refund_is_subtract: bool = Field(
        True, description="Refund fee from the merchant balance (`true`) or from the refund."
    )
    cryptomus_webhook_ips: list[str] = Field(
        default_factory=list,
        description="Optional source IPs/CIDRs allowed to post Cryptomus webhooks (empty: any).",
    )

    # --- paystack ------------------------------------------------------------------------------
    paystack_secret_key: SecretStr | None = Field(
        None,
        description="Paystack secret key (`sk_test_…`/`sk_live_…`): authenticates API calls and "
        "verifies webhooks (Paystack has no separate webhook secret); enables Paystack.",
    )
    paystack_api_base: str = Field("https://api.paystack.co", description="Paystack API base URL.")
    paystack_currencies: list[str] = Field(
        default_factory=lambda: ["GHS", "KES", "NGN", "USD", "ZAR"],
        description="Currencies to charge through Paystack (JSON list; each must be enabled "
        "on the Paystack integration).",
    )
    paystack_timeout_seconds: float | None = Field(
        None, gt=0, le=60, description="Timeout of one Paystack call; default the provider timeout."
    )
    paystack_webhook_ips: list[str] = Field(
        default_factory=list,
        description="Optional source IPs/CIDRs allowed to post Paystack webhooks (empty: any); "
        "the client IP is the one resolved through `TRUSTED_PROXIES`.",
    )

    # --- razorpay ------------------------------------------------------------------------------
    razorpay_key_id: str | None = Field(
        None,
        description="Razorpay API key id (`rzp_test_…`/`rzp_live_…`); public: it goes to Checkout.",
    )
    razorpay_key_secret: SecretStr | None = Field(
        None,
        description="Razorpay API key secret: authenticates API calls and verifies the Checkout "
        "callback signature. With the key id and webhook secret, enables Razorpay.",
    )
    razorpay_webhook_secret: SecretStr | None = Field(
        None,
        description="Secret of the Razorpay Dashboard webhook (not the key secret): verifies "
        "`X-Razorpay-Signature`.",
    )
    razorpay_previous_webhook_secret: SecretStr | None = Field(
        None,
        description="The webhook secret being rotated out, still accepted (Razorpay signs "
        "retries of older events with it).",
    )
    razorpay_api_base: str = Field("https://api.razorpay.com", description="Razorpay API base URL.")
    razorpay_currencies: list[str] = Field(
        default_factory=lambda: ["INR"],
        description="Currencies to charge through Razorpay (JSON list; international currencies "
        "must be enabled on the Razorpay account).",
    )
    razorpay_timeout_seconds: float | None = Field(
        None, gt=0, le=60, description="Timeout of one Razorpay call; default the provider timeout."
    )

    # --- stripe ---------------------------------------------------------------------------------
    stripe_secret_key: SecretStr | None = Field(
        None,
        description="Stripe secret key (`sk_test_…`/`sk_live_…`, or a restricted `rk_…` key); "
        "with a webhook secret it enables Stripe. Has a `_FILE` variant.",
    )
    stripe_webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Stripe webhook signing secrets (`whsec_…`, JSON list); a signature under "
        "any of them is accepted (rotation). The `_FILE` variant may list one per line.",
    )
    stripe_publishable_key: str | None = Field(
        None, description="Publishable key (`pk_…`) handed to the browser in the Elements flow."
    )
    stripe_flow: Literal["checkout", "payment_intent"] = Field(
        "checkout",
        description="`checkout`: redirect to a Stripe Checkout Session; `payment_intent`: a "
        "client secret for embedded Stripe Elements.",
    )
    stripe_api_base: str = Field("https://api.stripe.com", description="Stripe API base URL.")
    stripe_currencies: list[str] = Field(
        default_factory=lambda: [
            *("AUD", "CAD", "CHF", "DKK", "EUR", "GBP"),
            *("JPY", "NOK", "NZD", "SEK", "SGD", "USD"),
        ],
        description="Currencies to charge through Stripe (JSON list of ISO codes).",
    )
    stripe_timeout_seconds: float | None = Field(
        None, gt=0, le=80, description="Timeout of one Stripe call; default the provider timeout."
    )
    stripe_max_network_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="SDK retries (same idempotency key) after network errors, 409 and 5xx.",
    )
    stripe_checkout_expires_seconds: int = Field(
        1800,
        ge=1800,
        le=86400,
        description=(
            "Checkout Session lifetime (Stripe: 30 min to 24 h). tillpay keeps it a margin "
            "inside that window (clock skew and SDK retries resend the same expires_at): "
            "at least 1800 + 60 + retries x (timeout + 5) s, at most 86340 s."
        ),
    )

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        # A `_FILE` variant arrives as plain text: a JSON list, or one secret per line/comma.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]
        return value

    # --- email ------------------------------------------------------------------------------------
    smtp_host: str | None = Field(None, description="SMTP server; unset writes `.eml` files.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(
        None, description="SMTP password. Has a `_FILE` variant."
    )
    smtp_starttls: bool = Field(True, description="Require STARTTLS (port 587).")
    smtp_use_tls: bool = Field(False, description="Implicit TLS (port 465) instead of STARTTLS.")
    smtp_allow_plaintext: bool = Field(
        False, description="Allow SMTP without TLS (local relays only; refused in production)."
    )
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle to verify the SMTP server (system store when unset)."
    )
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="SMTP timeout.")
    mail_from: str = Field("tillpay <no-reply@localhost>", description="From address of mail.")
    mail_dir: Path | None = Field(
        None, description="Where `.eml` files go without SMTP; default `<data_dir>/mail`."
    )

    # --- observability --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_json: bool | None = Field(
        None, description="JSON log lines; default on except in development."
    )
    docs_enabled: bool | None = Field(
        None, description="Serve `/docs` and `/openapi.json`; default on except in production."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token required on `/metrics` (required in production)."
    )

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

    @field_validator("public_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_safety(self) -> Settings:
        if not self.public_base_url:
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.public_base_url = f"http://{host}:{self.port}"
        problems: list[str] = []
        if "*" in self.cors_allow_origins and self.cors_allow_credentials:
            problems.append("TILLPAY_CORS_ALLOW_ORIGINS: `*` cannot be combined with credentials")
        if len(self.secret_key.get_secret_value()) < 32:
            problems.append("TILLPAY_SECRET_KEY: must be at least 32 characters")
        if self.environment == "production":
            problems.extend(self._production_problems())
        if problems:
            raise ConfigurationError("unsafe configuration: " + "; ".join(problems))
        return self

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
    def is_production(self) -> bool:
        return self.environment == "production"

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

    @cached_property
    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or self.public_base_url

    @property
    def mailbox_dir(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"

    def build_mailer(self) -> Mailer:
        """SMTP when a host is configured, else `.eml` files in the mailbox directory."""
        from tillpay.notifications.mail import mailer_from_settings

        return mailer_from_settings(
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_username=self.smtp_username,
            smtp_password=self.smtp_password,
            smtp_starttls=self.smtp_starttls,
            smtp_use_tls=self.smtp_use_tls,
            smtp_ca_file=self.smtp_ca_file,
            smtp_allow_plaintext=self.smtp_allow_plaintext,
            smtp_timeout=self.smtp_timeout_seconds,
            mail_from=self.mail_from,
            mail_dir=self.mailbox_dir,
        )

    @property
    def sandbox_on(self) -> bool:
        if self.sandbox_enabled is None:
            return not self.is_production
        return self.sandbox_enabled

    @property
    def is_sqlite(self) -> bool:
        return self.database_dsn.startswith("sqlite")


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{ENV_PREFIX}{name.upper()}: {message}" if name else message)
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``.env``), applying ``overrides`` last."""
    return Settings(**overrides)
