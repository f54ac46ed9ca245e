"""TLS settings: readable files, complete pairs, and no development certificates in
production."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.foundation.test_settings import SAFE_PRODUCTION
from tests.tls.conftest import Pki
from tillpay.kit import certs
from tillpay.settings import ConfigurationError, Settings


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith("TILLPAY_"):
            monkeypatch.delenv(name)


def _tls(pki: Pki, **names: str) -> dict[str, Path]:
    return {f"tls_{field}_file": pki.path(name) for field, name in names.items()}


def test_no_tls_settings_mean_plain_http() -> None:
    assert not Settings().tls_on


def test_a_certificate_with_its_key_and_a_client_ca_is_accepted(pki: Pki) -> None:
    settings = Settings(**_tls(pki, cert="server.pem", key="server-key.pem", client_ca="ca.pem"))
    assert settings.tls_on
    assert settings.tls_client_ca_file == pki.path("ca.pem")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"cert": "server.pem"}, "TILLPAY_TLS_CERT_FILE and TILLPAY_TLS_KEY_FILE: set both"),
        ({"key": "server-key.pem"}, "TILLPAY_TLS_CERT_FILE and TILLPAY_TLS_KEY_FILE: set both"),
        ({"client_ca": "ca.pem"}, "TILLPAY_TLS_CLIENT_CA_FILE: client certificates need TLS"),
        ({"cert": "missing.pem", "key": "server-key.pem"}, "TILLPAY_TLS_CERT_FILE: "),
        ({"cert": "server.pem", "key": "client-key.pem"}, "not a matching PEM certificate"),
        (
            {"cert": "server.pem", "key": "server-key.pem", "client_ca": "ca-key.pem"},
            "TILLPAY_TLS_CLIENT_CA_FILE: no PEM CA certificate",
        ),
    ],
    ids=["cert only", "key only", "client CA only", "missing", "wrong key", "CA not a cert"],
)
def test_incomplete_or_unusable_tls_is_refused_everywhere(
    pki: Pki, names: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(**_tls(pki, **names))


def test_an_unreadable_file_is_named(pki: Pki, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    secret = tmp_path / "key.pem"
    secret.write_bytes(pki.path("server-key.pem").read_bytes())
    secret.chmod(0)
    with pytest.raises(ConfigurationError, match=r"TILLPAY_TLS_KEY_FILE: .* is not readable"):
        Settings(tls_cert_file=pki.path("server.pem"), tls_key_file=secret)


def test_production_refuses_development_certificates(pki: Pki) -> None:
    tls = _tls(pki, cert="server.pem", key="server-key.pem", client_ca="ca.pem")
    with pytest.raises(ConfigurationError) as refused:
        Settings(**SAFE_PRODUCTION, **tls)
    assert "TILLPAY_TLS_CERT_FILE: a `tillpay certs dev` certificate" in str(refused.value)
    assert "TILLPAY_TLS_CLIENT_CA_FILE: a `tillpay certs dev` certificate" in str(refused.value)


def test_production_accepts_certificates_of_its_own_ca(tmp_path: Path) -> None:
    ca = certs.make_ca("Shop CA", organization="Shop")
    server = certs.make_leaf(
        ca, "api.shop.example", server_names=("api.shop.example",), organization="Shop"
    )
    files = {
        "ca.pem": certs.certificate_pem(ca.certificate),
        "server.pem": certs.certificate_pem(server.certificate),
        "server-key.pem": certs.private_key_pem(server.key),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    settings = Settings(
        **SAFE_PRODUCTION,
        tls_cert_file=tmp_path / "server.pem",
        tls_key_file=tmp_path / "server-key.pem",
        tls_client_ca_file=tmp_path / "ca.pem",
    )
    assert settings.tls_on
