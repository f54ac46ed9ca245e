"""`tillpay check-config`: the configuration checked without starting, every problem listed
on its own line, the exit status telling a deployment script whether it would start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.foundation.test_settings import SAFE_PRODUCTION
from tillpay.cli import app as cli


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith("TILLPAY_"):
            monkeypatch.delenv(name)


def _env(values: Mapping[str, object]) -> dict[str, str]:
    def text(value: object) -> str:
        return ",".join(value) if isinstance(value, list) else str(value)

    return {f"TILLPAY_{name.upper()}": text(value) for name, value in values.items()}


def test_a_safe_production_configuration_passes() -> None:
    result = CliRunner().invoke(cli, ["check-config"], env=_env(SAFE_PRODUCTION))
    assert result.exit_code == 0, result.output
    assert "configuration OK (environment production, PostgreSQL" in result.output


def test_every_production_problem_is_listed_and_the_exit_status_is_2() -> None:
    unsafe = {
        **SAFE_PRODUCTION,
        "public_base_url": "http://api.shop.example",
        "cors_allow_origins": ["*"],
        "allowed_hosts": ["*"],
    }
    result = CliRunner().invoke(cli, ["check-config"], env=_env(unsafe))
    assert result.exit_code == 2
    listed = [line.strip() for line in result.output.splitlines() if line.startswith("  - ")]
    assert any(line.startswith("- TILLPAY_PUBLIC_BASE_URL") for line in listed), result.output
    assert any(line.startswith("- TILLPAY_CORS_ALLOW_ORIGINS") for line in listed)
    assert any(line.startswith("- TILLPAY_ALLOWED_HOSTS") for line in listed)
    assert f"tillpay: {len(listed)} configuration problems" in result.output


def test_malformed_values_are_each_named_by_their_variable() -> None:
    result = CliRunner().invoke(
        cli, ["check-config"], env={"TILLPAY_PORT": "eighty", "TILLPAY_REDIS_URL": "http://x"}
    )
    assert result.exit_code == 2
    assert "  - TILLPAY_PORT: " in result.output
    assert "  - TILLPAY_REDIS_URL: " in result.output
    assert "2 configuration problems" in result.output


def test_a_secret_given_in_a_bad_value_is_never_echoed() -> None:
    secret = "s3cr3t-" + "p" * 30
    result = CliRunner().invoke(
        cli, ["check-config"], env={"TILLPAY_DATABASE_URL": f"mysql://u:{secret}@db/x"}
    )
    assert result.exit_code == 2
    assert secret not in result.output
