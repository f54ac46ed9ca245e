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
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_origin

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tillpay.kit.ratelimit import RatePolicy
from tillpay.settings_safety import OVERRIDES, env_name, ip_entry_problem, production_risks
from tillpay.settings_safety import trusted_proxy_problems as _trusted_proxy_problems

if TYPE_CHECKING:
    from tillpay.notifications.mail import Mailer

ENV_PREFIX = "TILLPAY_"
#: Variables of the test harness, not settings (no typo warning for them).
_HARNESS_PREFIXES = ("TILLPAY_TEST_", "TILLPAY_FUZZ_")

logger = logging.getLogger(__name__)

#: URL schemes the database, Redis and broker clients accept.
_URL_SCHEMES = {
    "database_url": ("sqlite+aiosqlite", "postgresql+asyncpg"),
    "redis_url": ("redis", "rediss", "unix"),
    "broker_url": ("amqp", "amqps"),
}

#: The per-route rate-limit policies the routes use, and their defaults.
RATELIMIT_POLICY_DEFAULTS = {
    "auth": "10/minute;50/hour",
    "payments": "30/minute",
    "webhooks": "1200/minute",
    # Per email address: verification and password-reset mails.
    "account_mail": "3/hour;10/day",
}

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
            raise ConfigurationError(_describe(exc)) from None
        except SettingsError as exc:
            raise ConfigurationError(str(exc)) from None

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
    data_dir: Path = Field(
        Path("var"), description="Directory for the default SQLite database and mail."
    )
    demo_data: bool = Field(
        False, description="Load demo data at start (`tillpay dev` turns it on)."
    )
    worker_in_process: bool = Field(
        True, description="Run the background worker inside the API process."
    )

    # --- database -------------------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr(""),
        description="SQLAlchemy URL: `sqlite+aiosqlite:///…` or `postgresql+asyncpg://…`; "
        "default `sqlite+aiosqlite:///<DATA_DIR>/tillpay.db`.",
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
        None,
        description="Redis URL; rate limits and lockouts are shared across processes when set.",
    )
    redis_key_prefix: str = Field(
        "tillpay",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key tillpay writes (several deployments or test "
        "runs can share one Redis).",
    )
    redis_pool_size: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Most Redis connections per pool and process (rate limits, lockouts); "
        "requests beyond it wait for a free connection.",
    )
    redis_pool_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds a request waits for a free Redis connection; after that the "
        "rate limit treats Redis as busy (per `TILLPAY_RATELIMIT_FAIL_OPEN` for that "
        "request only), not as down.",
    )
    broker_url: SecretStr | None = Field(
        None, description="AMQP URL of RabbitMQ; checked by `/readyz` when set."
    )

    # --- HTTP perimeter -------------------------------------------------------------------
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host header allow-list (`a.example,b.example` or a JSON list). `*` is "
        "refused in production.",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (list of `https://shop.example`); `null` and "
        "`*` are refused in production.",
    )
    cors_allow_credentials: bool = Field(False, description="Allow credentialed CORS requests.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="IPs/CIDRs whose `X-Forwarded-For/Proto` and `X-Request-ID` are trusted; "
        "`*` (alone) trusts every peer and is refused in production.",
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
    ratelimit_enabled: bool = Field(
        True,
        description="Turn rate limiting on or off (login lockout stays on). Off is refused in "
        "production unless `I_UNDERSTAND_RATELIMIT_DISABLED`.",
    )
    ratelimit_global: str = Field(
        "600/minute", description="Per-IP limit on every request (`limits` notation)."
    )
    ratelimit_policies: dict[str, str] = Field(
        default_factory=lambda: dict(RATELIMIT_POLICY_DEFAULTS),
        description="Named policies (JSON object of name → `limits` notation): `auth`, "
        "`payments`, `webhooks` per client IP; `account_mail` per email address "
        "(verification and reset mails). Names left out keep their defaults.",
    )
    ratelimit_redis_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=10,
        description="Redis timeout for rate-limit checks; after a failure Redis is skipped for 1 s.",
    )
    ratelimit_fail_open: bool = Field(
        False,
        description="When Redis is unreachable: `true` lets requests through (and skips "
        "lockouts), `false` answers 429. `true` is refused in production.",
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
        True,
        description="Admin-only permissions (on any route) need an account with 2FA and a "
        "2FA login (always in production).",
    )
    login_lockout_threshold: int = Field(
        5, ge=1, le=100, description="Failed logins per account before back-off lockout starts."
    )
    login_lockout_base_seconds: int = Field(
        30, ge=1, description="First lockout; doubles with every further failure."
    )
    login_lockout_max_seconds: int = Field(3600, ge=1, description="Longest lockout.")
    password_hash_memory_kib: int = Field(
        19456,
        ge=8,
        description="Argon2id memory cost (KiB); OWASP minimum 19456 (lower only when "
        "`TILLPAY_ENVIRONMENT=test`).",
    )
    password_hash_iterations: int = Field(
        2, ge=1, description="Argon2id time cost; at least 2 except in tests."
    )

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
        None,
        description="The built-in sandbox provider; default on except in production, where "
        "`true` is refused.",
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
        "INFO", description="Log level (`DEBUG` is refused in production)."
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

    # --- acknowledged production risks (see docs/operations.md) --------------------------------
    i_understand_database_without_tls: bool = Field(
        False,
        description="Production: accept `DATABASE_SSL_MODE=disable` to another host (TLS "
        "by a sidecar or the network). Logged as a warning at every start.",
    )
    i_understand_redis_without_tls: bool = Field(
        False,
        description="Production: accept `redis://` to another host (TLS by a sidecar or the "
        "network). Logged as a warning at every start.",
    )
    i_understand_broker_without_tls: bool = Field(
        False,
        description="Production: accept `amqp://` to another host (TLS by a sidecar or the "
        "network). Logged as a warning at every start.",
    )
    i_understand_ratelimit_disabled: bool = Field(
        False,
        description="Production: accept `RATELIMIT_ENABLED=false` (a gateway enforces rate "
        "limits). Logged as a warning at every start.",
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

    @field_validator("database_url", "redis_url", "broker_url")
    @classmethod
    def _check_url_scheme(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        text = value.get_secret_value() if value is not None else ""
        schemes = _URL_SCHEMES[str(info.field_name)]
        if text and text.partition("://")[0].lower() not in schemes:
            # Only the scheme is named: the rest of the URL may carry a password.
            raise ValueError(f"unsupported scheme; use {' or '.join(f'`{s}://`' for s in schemes)}")
        return value

    @field_validator("ratelimit_global")
    @classmethod
    def _check_ratelimit_global(cls, value: str) -> str:
        RatePolicy.parse("global", value)
        return value

    @field_validator("ratelimit_policies")
    @classmethod
    def _check_ratelimit_policies(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(RATELIMIT_POLICY_DEFAULTS))
        if unknown:
            known = ", ".join(RATELIMIT_POLICY_DEFAULTS)
            raise ValueError(f"unknown policies {', '.join(unknown)} (policies: {known})")
        merged = {**RATELIMIT_POLICY_DEFAULTS, **value}
        for name, spec in merged.items():
            RatePolicy.parse(name, spec)
        return merged

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        entries = [entry.strip() for entry in value]
        problems = _trusted_proxy_problems(entries)
        if problems:
            raise ValueError("; ".join(problems))
        return entries

    @field_validator("paystack_webhook_ips", "cryptomus_webhook_ips")
    @classmethod
    def _check_ip_lists(cls, value: list[str]) -> list[str]:
        problems = [p for entry in value if (p := ip_entry_problem(entry, strict=False))]
        if problems:
            raise ValueError("; ".join(problems))
        return [entry.strip() for entry in value]

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
        if not self.database_url.get_secret_value():
            default_db = (self.data_dir / "tillpay.db").as_posix()
            self.database_url = SecretStr(f"sqlite+aiosqlite:///{default_db}")
        problems: list[str] = []
        accepted: list[str] = []
        if "*" in self.cors_allow_origins and self.cors_allow_credentials:
            problems.append("TILLPAY_CORS_ALLOW_ORIGINS: `*` cannot be combined with credentials")
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
            raise ConfigurationError("unsafe configuration: " + "; ".join(problems))
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
