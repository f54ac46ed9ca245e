"""TILLPAY_SERVICE_TOKEN_ISSUERS: refused at load when it could weaken verification."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from tests.credentials.service_token_helpers import SigningKey
from tests.foundation.test_settings import SAFE_PRODUCTION
from tillpay import cli
from tillpay.settings import ConfigurationError, Settings

KEY = SigningKey.new("k1")
VAR = "TILLPAY_SERVICE_TOKEN_ISSUERS"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TILLPAY_") and not name.startswith("TILLPAY_TEST_"):
            monkeypatch.delenv(name)


def entry(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": "https://shop.example",
        "audience": "tillpay",
        "jwks_url": "https://shop.example/.well-known/jwks.json",
        "algorithms": ["ES256"],
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def test_a_valid_entry_loads_from_a_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = entry(issuer="https://other.example", jwks_url=None, public_key_pem=KEY.public_pem())
    monkeypatch.setenv(VAR, json.dumps([entry(merchant="shop-1"), pem]))
    settings = Settings()
    first, second = settings.service_token_issuers
    assert (first.merchant, first.algorithms) == ("shop-1", ("ES256",))
    assert second.merchant == "default"
    assert second.public_key_pem == KEY.public_pem()


def _private_pem() -> str:
    return KEY.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


REFUSED: dict[str, tuple[list[dict[str, Any]], str]] = {
    "HS256": ([entry(algorithms=["HS256"])], "not allowed"),
    "none": ([entry(algorithms=["none"])], "not allowed"),
    "asymmetric mixed with HS512": ([entry(algorithms=["ES256", "HS512"])], "not allowed"),
    "no algorithms": ([entry(algorithms=[])], "ALGORITHMS"),
    "both key sources": ([entry(public_key_pem=KEY.public_pem())], "exactly one"),
    "no key source": ([entry(jwks_url=None)], "exactly one"),
    "http to another host": ([entry(jwks_url="http://shop.example/jwks.json")], "https"),
    "file URL": ([entry(jwks_url="file:///etc/jwks.json")], "https"),
    "PEM that is no key": ([entry(jwks_url=None, public_key_pem="garbage")], "no PEM"),
    "private key PEM": ([entry(jwks_url=None, public_key_pem=_private_pem())], "no PEM"),
    "PEM of another key type": (
        [entry(jwks_url=None, public_key_pem=_rsa_pem(), algorithms=["ES256"])],
        "cannot verify",
    ),
    "merchant not a slug": ([entry(merchant="Shop One")], "MERCHANT"),
    "unknown field": ([entry(jku="https://x")], "JKU"),
    "issuer listed twice": ([entry(), entry()], "twice"),
    "tillpay's own issuer": ([entry(issuer="http://127.0.0.1:8000")], "own JWT issuer"),
    "certificate binding without mutual TLS": (
        [entry(client_cert_subject="CN=shop")],
        "TILLPAY_TLS_CLIENT_CA_FILE",
    ),
}


@pytest.mark.parametrize(("issuers", "match"), REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_entries_are_refused_in_every_environment(
    issuers: list[dict[str, Any]], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        Settings(environment="development", service_token_issuers=issuers)
    assert VAR in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_http_to_loopback_is_allowed_outside_production_only() -> None:
    local = [entry(jwks_url="http://127.0.0.1:8081/jwks.json")]
    assert Settings(environment="development", service_token_issuers=local)
    with pytest.raises(ConfigurationError, match=f"{VAR}: .*https://"):
        Settings(**SAFE_PRODUCTION, service_token_issuers=local)
    assert Settings(**SAFE_PRODUCTION, service_token_issuers=[entry()])


def test_check_config_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, json.dumps([entry(algorithms=["HS256"])]))
    result = CliRunner().invoke(cli.app, ["check-config"])
    assert result.exit_code == 2
    assert VAR in result.output
    monkeypatch.setenv(VAR, "not json")
    result = CliRunner().invoke(cli.app, ["check-config"])
    assert result.exit_code == 2
    assert VAR in result.output
