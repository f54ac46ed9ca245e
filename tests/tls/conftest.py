"""A PKI for the TLS tests: the development CA and its server and client certificates,
a client certificate from another CA, and an expired one from the right CA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tillpay.kit import certs


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def _save(directory: Path, stem: str, issued: certs.Issued) -> None:
    (directory / f"{stem}.pem").write_bytes(certs.certificate_pem(issued.certificate))
    (directory / f"{stem}-key.pem").write_bytes(certs.private_key_pem(issued.key))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    certs.write_dev_certificates(directory, days=30)
    other_ca = certs.make_ca("another CA", organization="elsewhere")
    _save(directory, "stranger", certs.make_leaf(other_ca, "stranger", client=True))
    key = load_pem_private_key((directory / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = certs.Issued(x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes()), key)
    past = datetime.now(UTC) - timedelta(days=10)
    _save(
        directory, "expired", certs.make_leaf(ca, "expired", client=True, days=1, not_before=past)
    )
    return Pki(directory)
