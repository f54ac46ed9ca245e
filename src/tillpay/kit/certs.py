"""Certificates for development TLS: a local CA, a localhost server and a client.

P-256 keys (fast to generate, accepted by every TLS stack) signed with SHA-256. The
organisation name marks them, so that production can refuse them (anyone with the
development CA's key, kept on a laptop, could mint client certificates).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEV_ORGANIZATION = "tillpay development"
CA_DAYS = 3650
LEAF_DAYS = 365
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
CLIENT_NAME = "tillpay-dev-client"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int, not_before: datetime | None) -> tuple[datetime, datetime]:
    # A minute back: a peer whose clock runs slightly behind still accepts it.
    start = not_before or datetime.now(UTC) - timedelta(minutes=1)
    return start, start + timedelta(days=days)


def make_ca(
    common_name: str = "tillpay development CA",
    *,
    organization: str = DEV_ORGANIZATION,
    days: int = CA_DAYS,
) -> Issued:
    """A self-signed CA that signs leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, organization)
    start, end = _validity(days, None)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def make_leaf(
    ca: Issued,
    common_name: str,
    *,
    server_names: tuple[str, ...] = (),
    client: bool = False,
    days: int = LEAF_DAYS,
    not_before: datetime | None = None,
    organization: str = DEV_ORGANIZATION,
) -> Issued:
    """A certificate signed by ``ca``: a server one for ``server_names`` (DNS names or IP
    addresses, the SAN), or a client one (``clientAuth``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before)
    public = key.public_key()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    ca_key_id = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id.value),
            critical=False,
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def is_dev_certificate(path: Path) -> bool:
    """Whether a PEM file holds a certificate made or signed by ``tillpay certs dev``."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        return False
    return any(
        attribute.value == DEV_ORGANIZATION
        for certificate in certificates
        for name in (certificate.subject, certificate.issuer)
        for attribute in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )


# --- files -----------------------------------------------------------------------------------

#: What `tillpay certs dev` writes into its directory.
DEV_FILES = (
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
)


def write_dev_certificates(directory: Path, *, days: int = LEAF_DAYS, force: bool = False) -> None:
    """Write the CA, server and client files (keys 0600); refuse to replace any of them
    unless ``force`` (a replaced CA invalidates every certificate it signed)."""
    existing = [name for name in DEV_FILES if (directory / name).exists()]
    if existing and not force:
        raise FileExistsError(", ".join(existing))
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    server = make_leaf(ca, "localhost", server_names=SERVER_NAMES, days=days)
    client = make_leaf(ca, CLIENT_NAME, client=True, days=days)
    for stem, issued in (("ca", ca), ("server", server), ("client", client)):
        _write(directory / f"{stem}-key.pem", private_key_pem(issued.key), mode=0o600)
        _write(directory / f"{stem}.pem", certificate_pem(issued.certificate), mode=0o644)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Created with its mode (never briefly world-readable under the umask), replacing a
    # previous file only when forced (the caller checked).
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as output:
        output.write(data)
    os.chmod(path, mode)  # the umask may have cleared bits of a 0644 certificate
