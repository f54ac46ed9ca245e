"""`tillpay certs dev`: the files it writes, their names, usages and modes."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from tillpay.cli import app as cli
from tillpay.kit.certs import DEV_FILES


def _cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def _usages(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _lifetime(certificate: x509.Certificate) -> timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def test_certs_dev_writes_a_ca_a_localhost_server_and_a_client(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = CliRunner().invoke(cli, ["certs", "dev", "--out", str(out), "--days", "30"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(DEV_FILES)
    for name in ("TILLPAY_TLS_CERT_FILE", "TILLPAY_TLS_KEY_FILE", "TILLPAY_TLS_CLIENT_CA_FILE"):
        assert name in result.output
    for name in DEV_FILES:
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), name

    ca, server, client = (_cert(out, f"{n}.pem") for n in ("ca", "server", "client"))
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert _lifetime(ca) == timedelta(days=3650)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert _usages(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _usages(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for leaf in (server, client):
        assert leaf.issuer == ca.subject
        leaf.verify_directly_issued_by(ca)
        assert _lifetime(leaf) == timedelta(days=30)
        assert leaf.not_valid_before_utc <= datetime.now(UTC)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_certs_dev_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    args = ["certs", "dev", "--out", str(tmp_path)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = (tmp_path / "ca.pem").read_bytes()

    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert "--force" in refused.stderr
    assert (tmp_path / "ca.pem").read_bytes() == before

    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "ca.pem").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
