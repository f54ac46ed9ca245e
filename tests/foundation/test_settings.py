"""Configuration: production refuses unsafe defaults and names the setting at fault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tillpay.settings import DEV_SECRET_KEY, ConfigurationError, Settings
from tillpay.settings_docs import BEGIN_MARKER, END_MARKER, settings_table

ROOT = Path(__file__).resolve().parents[2]
STRONG = "p" * 20 + "0123456789abcdefghijklmnop"

SAFE_PRODUCTION = {
    "environment": "production",
    "secret_key": "Zx8" + "k3" * 20,
    "database_url": "postgresql+asyncpg://tillpay@db.internal/tillpay",
    "allowed_hosts": ["api.shop.example"],
    "public_base_url": "https://api.shop.example",
    "metrics_token": "Q9" * 20,
    "smtp_host": "smtp.shop.example",
    "payment_return_urls": ["https://shop.example/checkout/"],
}


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(__import__("os").environ):
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
