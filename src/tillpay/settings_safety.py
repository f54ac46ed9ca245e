"""What production refuses, and which refusals an operator may acknowledge instead.

Each check yields a :class:`Risk` naming the variable at fault. A risk with an
``override`` is accepted when that ``TILLPAY_I_UNDERSTAND_…`` setting is true (the
acceptance is logged as a warning at every start); the others are always refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from tillpay.settings import Settings

ENV_PREFIX = "TILLPAY_"


@dataclass(frozen=True)
class Risk:
    """An unsafe production value: ``message`` names the variable; ``override`` is the
    setting (field name) that acknowledges it, or None when nothing can."""

    message: str
    override: str | None = None


#: Each override and when it is legitimate (README and docs/operations.md describe them).
OVERRIDES = {
    "i_understand_database_without_tls": "a sidecar or the network encrypts database traffic",
    "i_understand_database_tls_unverified": (
        "the database's certificate cannot be verified and the network path is trusted"
    ),
    "i_understand_redis_without_tls": "a sidecar or the network encrypts Redis traffic",
    "i_understand_broker_without_tls": "a sidecar or the network encrypts broker traffic",
    "i_understand_ratelimit_disabled": "a gateway in front enforces rate limits",
    "i_understand_telemetry_without_tls": (
        "a sidecar or the network encrypts traces and error reports"
    ),
}


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


# --- hosts -----------------------------------------------------------------------------------


def is_local_host(host: str) -> bool:
    """``localhost``, a loopback address (IPv4, IPv6, IPv4-mapped) or a unix socket path."""
    host = host.strip().strip("[]").lower()
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _split_host_port(item: str) -> str:
    if item.startswith("["):
        return item[1 : item.find("]")] if "]" in item else item
    return item.rsplit(":", 1)[0] if item.count(":") == 1 else item


def postgres_hosts(dsn: str) -> list[str]:
    """Every host a PostgreSQL URL may connect to (netloc list and ``?host=``).

    An empty list means the driver's default: a unix socket or localhost.
    """
    parts = urlsplit(dsn)
    netloc = parts.netloc.rpartition("@")[2]
    hosts = [_split_host_port(item) for item in netloc.split(",") if item]
    for value in parse_qs(parts.query).get("host", []):
        hosts.extend(item for item in unquote(value).split(",") if item)
    return [host for host in hosts if host]


def _remote_plaintext(url: str, *, tls: set[str], local: set[str]) -> bool:
    """True when ``url`` is neither TLS (scheme in ``tls``) nor on this host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in tls or scheme in local:
        return False
    return not is_local_host(parts.hostname or "")


# --- IP lists ----------------------------------------------------------------------------------


def ip_entry_problem(entry: str, *, strict: bool) -> str | None:
    """Why ``entry`` is not an IP address or CIDR network (None when it is).

    ``strict`` refuses networks with host bits set (uvicorn's proxy middleware would
    silently treat ``10.0.0.1/8`` as a literal that never matches).
    """
    text = entry.strip()
    try:
        if "/" not in text:
            ipaddress.ip_address(text)
            return None
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    else:
        return None
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
        else:
            if not strict:
                return None
            return f"{text!r} has host bits set; write the network {str(network)!r}"
    return f"{text!r} is not an IP address or CIDR network (host names are not resolved)"


def trusted_proxy_problems(entries: list[str]) -> list[str]:
    if "*" in entries:
        if len(entries) > 1:
            return ["`*` (trust every peer) cannot be combined with other entries"]
        return []
    return [p for entry in entries if (p := ip_entry_problem(entry, strict=True))]


# --- production ------------------------------------------------------------------------------


def production_risks(settings: Settings) -> Iterator[Risk]:
    """The unsafe production values that the basic checks in ``settings`` do not cover."""
    if settings.sandbox_enabled:
        yield Risk(
            "TILLPAY_SANDBOX_ENABLED: the sandbox provider marks orders paid with test cards; "
            "it is never allowed in production"
        )
    if not settings.ratelimit_enabled:
        yield Risk(
            "TILLPAY_RATELIMIT_ENABLED: rate limiting is off",
            override="i_understand_ratelimit_disabled",
        )
    if settings.ratelimit_fail_open:
        yield Risk(
            "TILLPAY_RATELIMIT_FAIL_OPEN: a Redis outage would switch rate limits and "
            "lockouts off; production fails closed"
        )
    if settings.webhooks_allow_private_targets:
        yield Risk(
            "TILLPAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS: merchant webhooks could reach loopback, "
            "private and cloud-metadata addresses; it is never allowed in production"
        )
    if not settings.admin_require_2fa:
        yield Risk("TILLPAY_ADMIN_REQUIRE_2FA: admin routes need 2FA in production")
    if settings.log_level == "DEBUG":
        yield Risk("TILLPAY_LOG_LEVEL: DEBUG logging is not allowed in production")
    if "null" in (origin.strip().lower() for origin in settings.cors_allow_origins):
        yield Risk(
            "TILLPAY_CORS_ALLOW_ORIGINS: the `null` origin (sandboxed frames, file: pages) "
            "is not allowed in production"
        )
    if "*" in settings.trusted_proxies:
        yield Risk(
            "TILLPAY_TRUSTED_PROXIES: `*` lets any client choose its IP address; list the "
            "load balancer's addresses or networks"
        )
    for entry in settings.service_token_issuers:
        if entry.jwks_url is not None and not entry.jwks_url.startswith("https://"):
            yield Risk(
                f"TILLPAY_SERVICE_TOKEN_ISSUERS: {entry.issuer!r} fetches its keys over "
                "http://; production needs https://"
            )
    yield from _plaintext_risks(settings)
    yield from _tls_risks(settings)


def _plaintext_risks(settings: Settings) -> Iterator[Risk]:
    dsn = settings.database_dsn
    remote_postgres = dsn.startswith("postgresql") and not all(
        is_local_host(host) for host in postgres_hosts(dsn)
    )
    if remote_postgres and settings.database_ssl_mode == "disable":
        yield Risk(
            "TILLPAY_DATABASE_SSL_MODE: `disable` sends database traffic unencrypted to "
            "another host; use `verify-full`",
            override="i_understand_database_without_tls",
        )
    if remote_postgres and settings.database_ssl_mode == "require":
        # Checklist item 62: TLS to PostgreSQL *with certificate validation*; `require`
        # accepts any certificate, so whoever sits on the path can read and change traffic.
        yield Risk(
            "TILLPAY_DATABASE_SSL_MODE: `require` encrypts but accepts any server "
            "certificate; use `verify-full` (with TILLPAY_DATABASE_SSL_ROOT_CERT)",
            override="i_understand_database_tls_unverified",
        )
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    if redis_url and _remote_plaintext(redis_url, tls={"rediss"}, local={"unix"}):
        yield Risk(
            "TILLPAY_REDIS_URL: `redis://` to another host is unencrypted; use `rediss://`",
            override="i_understand_redis_without_tls",
        )
    broker_url = settings.broker_url.get_secret_value() if settings.broker_url else None
    if broker_url and _remote_plaintext(broker_url, tls={"amqps"}, local=set()):
        yield Risk(
            "TILLPAY_BROKER_URL: `amqp://` to another host is unencrypted; use `amqps://`",
            override="i_understand_broker_without_tls",
        )
    # Traces and error reports are redacted like logs, but still describe requests (paths,
    # SQL, error messages): they cross the network encrypted, as logs shipped off host do.
    otlp = settings.otel_exporter_otlp_endpoint
    if otlp and _remote_plaintext(otlp, tls={"https"}, local=set()):
        yield Risk(
            "TILLPAY_OTEL_EXPORTER_OTLP_ENDPOINT: `http://` to another host is unencrypted; "
            "use `https://`",
            override="i_understand_telemetry_without_tls",
        )
    sentry = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    if sentry and _remote_plaintext(sentry, tls={"https"}, local=set()):
        yield Risk(
            "TILLPAY_SENTRY_DSN: `http://` to another host is unencrypted; use `https://`",
            override="i_understand_telemetry_without_tls",
        )


def _tls_risks(settings: Settings) -> Iterator[Risk]:
    # Half configurations are refused everywhere (settings_groups/tls.py); here, what only
    # production must not run with: `tillpay certs dev` files, whose CA key sits on a
    # developer's disk and could mint any client certificate.
    from tillpay.kit.certs import is_dev_certificate

    for field in ("tls_cert_file", "tls_client_ca_file"):
        path = getattr(settings, field)
        if path is not None and is_dev_certificate(path):
            yield Risk(
                f"{env_name(field)}: a `tillpay certs dev` certificate; use certificates "
                "from your own CA in production"
            )
