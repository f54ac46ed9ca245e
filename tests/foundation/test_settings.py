"""Configuration: production refuses unsafe defaults and names the setting at fault."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tillpay import cli
from tillpay.settings import (
    DEV_SECRET_KEY,
    RATELIMIT_POLICY_DEFAULTS,
    ConfigurationError,
    Settings,
)
from tillpay.settings_docs import BEGIN_MARKER, END_MARKER, settings_table

ROOT = Path(__file__).resolve().parents[2]
STRONG = "p" * 20 + "0123456789abcdefghijklmnop"

SAFE_PRODUCTION = {
    "environment": "production",
    "secret_key": "Zx8" + "k3" * 20,
    "database_url": "postgresql+asyncpg://tillpay@db.internal/tillpay",
    "database_ssl_mode": "verify-full",
    "allowed_hosts": ["api.shop.example"],
    "public_base_url": "https://api.shop.example",
    "metrics_token": "Q9" * 20,
    "smtp_host": "smtp.shop.example",
    "payment_return_urls": ["https://shop.example/checkout/"],
}


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith("TILLPAY_"):
            monkeypatch.delenv(name)


def test_a_complete_production_configuration_is_accepted() -> None:
    settings = Settings(**SAFE_PRODUCTION)
    assert settings.is_production
    assert settings.docs_on is False


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"secret_key": DEV_SECRET_KEY}, "TILLPAY_SECRET_KEY"),
        ({"secret_key": "changeme" * 5}, "TILLPAY_SECRET_KEY"),
        ({"secret_key": "short"}, "TILLPAY_SECRET_KEY"),
        ({"database_url": "sqlite+aiosqlite:///var/x.db"}, "TILLPAY_DATABASE_URL"),
        ({"cors_allow_origins": ["*"]}, "TILLPAY_CORS_ALLOW_ORIGINS"),
        ({"allowed_hosts": ["*"]}, "TILLPAY_ALLOWED_HOSTS"),
        ({"public_base_url": "http://api.shop.example"}, "TILLPAY_PUBLIC_BASE_URL"),
        ({"metrics_token": None}, "TILLPAY_METRICS_TOKEN"),
        ({"demo_data": True}, "TILLPAY_DEMO_DATA"),
        ({"smtp_host": None}, "TILLPAY_SMTP_HOST"),
        ({"sandbox_enabled": True}, "TILLPAY_SANDBOX_ENABLED"),
        ({"ratelimit_enabled": False}, "TILLPAY_RATELIMIT_ENABLED"),
        ({"ratelimit_fail_open": True}, "TILLPAY_RATELIMIT_FAIL_OPEN"),
        ({"admin_require_2fa": False}, "TILLPAY_ADMIN_REQUIRE_2FA"),
        ({"database_ssl_mode": "disable"}, "TILLPAY_DATABASE_SSL_MODE"),
        ({"redis_url": "redis://cache.internal:6379/0"}, "TILLPAY_REDIS_URL"),
        ({"broker_url": "amqp://tillpay@mq.internal/"}, "TILLPAY_BROKER_URL"),
        ({"cors_allow_origins": ["https://shop.example", "null"]}, "TILLPAY_CORS_ALLOW_ORIGINS"),
        ({"log_level": "DEBUG"}, "TILLPAY_LOG_LEVEL"),
        ({"trusted_proxies": ["*"]}, "TILLPAY_TRUSTED_PROXIES"),
    ],
)
def test_production_refuses_unsafe_values_and_names_them(
    override: dict[str, object], setting: str
) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        Settings(**{**SAFE_PRODUCTION, **override})


def test_production_with_all_defaults_lists_every_problem() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(environment="production")
    message = str(caught.value)
    for setting in ("TILLPAY_SECRET_KEY", "TILLPAY_DATABASE_URL", "TILLPAY_PUBLIC_BASE_URL"):
        assert setting in message
    assert DEV_SECRET_KEY not in message


def test_docs_in_production_need_an_explicit_flag() -> None:
    assert Settings(**SAFE_PRODUCTION, docs_enabled=True).docs_on is True


def test_wildcard_cors_with_credentials_is_refused_everywhere() -> None:
    with pytest.raises(ConfigurationError, match="TILLPAY_CORS_ALLOW_ORIGINS"):
        Settings(cors_allow_origins=["*"], cors_allow_credentials=True)


def test_environment_variables_use_the_tillpay_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLPAY_PORT", "9123")
    monkeypatch.setenv("TILLPAY_ALLOWED_HOSTS", '["a.example"]')
    settings = Settings()
    assert settings.port == 9123
    assert settings.allowed_hosts == ["a.example"]


def test_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(STRONG + "\n")
    monkeypatch.setenv("TILLPAY_SECRET_KEY_FILE", str(secret_file))
    assert Settings().secret_key.get_secret_value() == STRONG


def test_secret_file_and_plain_variable_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(STRONG)
    monkeypatch.setenv("TILLPAY_SECRET_KEY_FILE", str(secret_file))
    monkeypatch.setenv("TILLPAY_SECRET_KEY", STRONG)
    with pytest.raises(ConfigurationError, match="both set"):
        Settings()


def test_unreadable_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLPAY_SECRET_KEY_FILE", "/nonexistent/secret")
    with pytest.raises(ConfigurationError, match="TILLPAY_SECRET_KEY_FILE"):
        Settings()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TILLPAY_PORT=9321\n")
    assert Settings().port == 9321


def test_secrets_are_not_shown_in_repr() -> None:
    settings = Settings(secret_key=STRONG, redis_url="redis://:hunter2@cache:6379/0")
    assert STRONG not in repr(settings)
    assert "hunter2" not in repr(settings)


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN_MARKER) + ".*?" + re.escape(END_MARKER), readme, re.S)
    assert match, "README.md lacks the generated settings table"
    assert match.group(0) + "\n" == settings_table(), "run `tillpay config-docs`"


# --- production: unencrypted connections to other hosts --------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://tillpay@10.0.0.5/tillpay",
        "postgresql+asyncpg://tillpay@[2001:db8::5]:5432/tillpay",
        "postgresql+asyncpg://tillpay@/tillpay?host=db.internal",
        "postgresql+asyncpg://tillpay@127.0.0.1,db.internal/tillpay",
    ],
)
def test_production_refuses_plaintext_postgresql_to_another_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match="TILLPAY_DATABASE_SSL_MODE"):
        Settings(**{**SAFE_PRODUCTION, "database_url": url, "database_ssl_mode": "disable"})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://tillpay@127.0.0.1/tillpay",
        "postgresql+asyncpg://tillpay@127.8.9.1:5432/tillpay",
        "postgresql+asyncpg://tillpay@localhost/tillpay",
        "postgresql+asyncpg://tillpay@[::1]:5432/tillpay",
        "postgresql+asyncpg://tillpay@/tillpay?host=/run/postgresql",
        "postgresql+asyncpg://tillpay@/tillpay",
    ],
)
def test_production_accepts_plaintext_postgresql_on_this_host(url: str) -> None:
    Settings(**{**SAFE_PRODUCTION, "database_url": url, "database_ssl_mode": "disable"})


def test_production_refuses_unverified_tls_to_postgresql_on_another_host() -> None:
    """`require` encrypts but takes any certificate: a machine in the middle can read it."""
    with pytest.raises(ConfigurationError, match="TILLPAY_I_UNDERSTAND_DATABASE_TLS_UNVERIFIED"):
        Settings(**{**SAFE_PRODUCTION, "database_ssl_mode": "require"})


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_production_accepts_verified_tls_to_postgresql(mode: str) -> None:
    Settings(**{**SAFE_PRODUCTION, "database_ssl_mode": mode})


def test_production_accepts_unverified_tls_to_postgresql_on_this_host() -> None:
    local = "postgresql+asyncpg://tillpay@127.0.0.1/tillpay"
    Settings(**{**SAFE_PRODUCTION, "database_url": local, "database_ssl_mode": "require"})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://:pw@[::1]:6379",
        "unix:///run/redis/redis.sock",
        "rediss://cache.internal:6380/0",
    ],
)
def test_production_accepts_local_or_tls_redis(url: str) -> None:
    Settings(**{**SAFE_PRODUCTION, "redis_url": url})


@pytest.mark.parametrize("url", ["redis://10.1.2.3:6379", "redis://:pw@[fd00::3]:6379/1"])
def test_production_refuses_plaintext_redis_to_another_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match="TILLPAY_REDIS_URL") as caught:
        Settings(**{**SAFE_PRODUCTION, "redis_url": url})
    assert "pw" not in str(caught.value)


def test_production_accepts_tls_to_the_broker() -> None:
    Settings(**{**SAFE_PRODUCTION, "broker_url": "amqps://tillpay@mq.internal/"})


def test_a_refusal_that_has_an_override_names_it() -> None:
    with pytest.raises(ConfigurationError, match="TILLPAY_I_UNDERSTAND_DATABASE_WITHOUT_TLS"):
        Settings(**{**SAFE_PRODUCTION, "database_ssl_mode": "disable"})


# --- production: acknowledged overrides ---------------------------------------------------------


@pytest.mark.parametrize(
    ("unsafe", "override", "setting"),
    [
        (
            {"database_ssl_mode": "disable"},
            "i_understand_database_without_tls",
            "TILLPAY_DATABASE_SSL_MODE",
        ),
        (
            {"database_ssl_mode": "require"},
            "i_understand_database_tls_unverified",
            "TILLPAY_DATABASE_SSL_MODE",
        ),
        (
            {"redis_url": "redis://cache.internal:6379/0"},
            "i_understand_redis_without_tls",
            "TILLPAY_REDIS_URL",
        ),
        (
            {"broker_url": "amqp://tillpay@mq.internal/"},
            "i_understand_broker_without_tls",
            "TILLPAY_BROKER_URL",
        ),
        (
            {"ratelimit_enabled": False},
            "i_understand_ratelimit_disabled",
            "TILLPAY_RATELIMIT_ENABLED",
        ),
        (
            {"otel_exporter_otlp_endpoint": "http://collector.internal:4318"},
            "i_understand_telemetry_without_tls",
            "TILLPAY_OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            {"sentry_dsn": "http://public@sentry.internal/1"},
            "i_understand_telemetry_without_tls",
            "TILLPAY_SENTRY_DSN",
        ),
    ],
)
def test_production_accepts_an_acknowledged_risk_and_logs_a_warning(
    unsafe: dict[str, object], override: str, setting: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tillpay.settings"):
        Settings(**{**SAFE_PRODUCTION, **unsafe, override: True})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(setting in m and f"TILLPAY_{override.upper()}" in m for m in warnings), warnings


def test_an_override_without_the_risk_it_acknowledges_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tillpay.settings"):
        Settings(**SAFE_PRODUCTION, i_understand_redis_without_tls=True)
    assert any(
        "TILLPAY_I_UNDERSTAND_REDIS_WITHOUT_TLS" in r.getMessage()
        and "not needed" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    "telemetry",
    [
        {"otel_exporter_otlp_endpoint": "https://collector.internal:4318"},
        {"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"},
        {"sentry_dsn": "https://public@sentry.internal/1"},
        {"sentry_dsn": "http://public@localhost:9000/1"},
    ],
)
def test_production_accepts_telemetry_over_tls_or_to_this_host(
    telemetry: dict[str, str],
) -> None:
    Settings(**{**SAFE_PRODUCTION, **telemetry})


@pytest.mark.parametrize(
    "bad",
    [{"otel_exporter_otlp_endpoint": "grpc://collector:4317"}, {"sentry_dsn": "udp://k@h/1"}],
)
def test_telemetry_urls_must_be_http(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        Settings(**bad)


def test_plaintext_to_another_host_is_accepted_outside_production() -> None:
    settings = Settings(database_url="postgresql+asyncpg://tillpay@db.internal/tillpay")
    assert settings.database_ssl_mode == "disable"


# --- trusted proxies and IP lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [["proxy.internal"], ["10.0.0.1/8"], ["*", "10.0.0.1"], ["300.1.1.1"], [""]],
)
def test_trusted_proxies_must_be_ip_addresses_or_networks(entries: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="TILLPAY_TRUSTED_PROXIES"):
        Settings(trusted_proxies=entries)


def test_trusted_proxy_networks_with_host_bits_suggest_the_network() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("10.0.0.0/8")):
        Settings(trusted_proxies=["10.0.0.1/8"])


def test_trusted_proxies_accept_addresses_networks_and_a_lone_wildcard() -> None:
    assert Settings(trusted_proxies=["10.0.0.1", "fd00::/8", "192.0.2.0/24"]).trusted_proxies
    assert Settings(trusted_proxies=["*"]).trusted_proxies == ["*"]


@pytest.mark.parametrize("field", ["paystack_webhook_ips", "cryptomus_webhook_ips"])
def test_webhook_ip_lists_must_be_ip_addresses_or_networks(field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"TILLPAY_{field.upper()}"):
        Settings(**{field: ["api.paystack.co"]})


# --- how values are written -------------------------------------------------------------------------


def test_list_settings_accept_comma_separated_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLPAY_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("TILLPAY_JANITOR_UNKNOWN_SCHEDULE", "60,120")
    settings = Settings()
    assert settings.allowed_hosts == ["a.example", "b.example"]
    assert settings.janitor_unknown_schedule == [60, 120]


def test_list_settings_in_a_dotenv_file_accept_comma_separated_values(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "TILLPAY_CORS_ALLOW_ORIGINS=https://a.example,https://b.example\n"
    )
    assert Settings().cors_allow_origins == ["https://a.example", "https://b.example"]


def test_malformed_json_list_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TILLPAY_ALLOWED_HOSTS", '["a.example"')
    with pytest.raises(ConfigurationError, match=r"TILLPAY_ALLOWED_HOSTS: .*comma-separated"):
        Settings()


def test_malformed_json_object_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TILLPAY_RATELIMIT_POLICIES", "auth=10/minute")
    with pytest.raises(ConfigurationError, match=r"TILLPAY_RATELIMIT_POLICIES: .*JSON object"):
        Settings()


def test_an_unknown_tillpay_variable_is_warned_about_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TILLPAY_ALLOWED_HOST", "a.example")
    with caplog.at_level(logging.WARNING, logger="tillpay.settings"):
        Settings()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("TILLPAY_ALLOWED_HOST " in m and "TILLPAY_ALLOWED_HOSTS" in m for m in messages)


def test_an_unknown_variable_in_the_dotenv_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".env").write_text("TILLPAY_SECRET_KY=x\n")
    with caplog.at_level(logging.WARNING, logger="tillpay.settings"):
        Settings()
    assert any("TILLPAY_SECRET_KY" in r.getMessage() for r in caplog.records)


def test_known_variables_and_file_variants_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(STRONG)
    monkeypatch.setenv("TILLPAY_SECRET_KEY_FILE", str(secret_file))
    monkeypatch.setenv("TILLPAY_PORT", "9000")
    monkeypatch.setenv("TILLPAY_TEST_BACKENDS", "sqlite")
    with caplog.at_level(logging.WARNING, logger="tillpay.settings"):
        Settings()
    assert not caplog.records


def test_the_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.database_dsn == f"sqlite+aiosqlite:///{tmp_path}/data/tillpay.db"


def test_an_explicit_database_url_wins_over_the_data_dir(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/elsewhere.db"
    assert Settings(data_dir=tmp_path / "data", database_url=url).database_dsn == url


def test_migrate_creates_the_database_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TILLPAY_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(cli.app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "tillpay.db").is_file()


def test_a_malformed_rate_limit_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLPAY_RATELIMIT_GLOBAL", "lots")
    with pytest.raises(ConfigurationError, match="TILLPAY_RATELIMIT_GLOBAL: invalid rate-limit"):
        Settings()


def test_rate_limit_policies_left_out_keep_their_default() -> None:
    policies = Settings(ratelimit_policies={"auth": "5/minute"}).ratelimit_policies
    assert policies["auth"] == "5/minute"
    assert set(policies) == set(RATELIMIT_POLICY_DEFAULTS)
    assert policies["payments"] == RATELIMIT_POLICY_DEFAULTS["payments"]


@pytest.mark.parametrize("name", ["auht", "global"])
def test_an_unknown_rate_limit_policy_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"TILLPAY_RATELIMIT_POLICIES: .*{name}"):
        Settings(ratelimit_policies={name: "5/minute"})


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("database_url", "postgres://tillpay@db.internal/tillpay"),
        ("database_url", "mysql+aiomysql://tillpay@db.internal/tillpay"),
        ("redis_url", "http://cache.internal:6379"),
        ("broker_url", "redis://mq.internal"),
    ],
)
def test_a_service_url_with_an_unsupported_scheme_names_the_variable(field: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match=f"TILLPAY_{field.upper()}: .*scheme") as caught:
        Settings(**{field: url})
    assert "db.internal" not in str(caught.value)


# --- tillpay serve --------------------------------------------------------------------------------


def test_serve_refuses_an_unsafe_production_configuration_in_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TILLPAY_")} | {
        f"TILLPAY_{k.upper()}": _env_value(v) for k, v in SAFE_PRODUCTION.items()
    }
    env |= {
        "TILLPAY_SANDBOX_ENABLED": "true",
        "TILLPAY_RATELIMIT_ENABLED": "false",
        "TILLPAY_REDIS_URL": "redis://cache.internal:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tillpay.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for setting in ("TILLPAY_SANDBOX_ENABLED", "TILLPAY_RATELIMIT_ENABLED", "TILLPAY_REDIS_URL"):
        assert setting in lines[0]
    assert "Traceback" not in result.stderr


def _env_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
