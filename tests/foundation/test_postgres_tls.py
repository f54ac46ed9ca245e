"""PostgreSQL over TLS: tillpay's ``database_ssl_*`` settings against a real TLS server.

The machine's shared PostgreSQL has TLS off, so this module starts its own throw-away
instance with ``ssl=on`` and client-certificate authentication only (``hostssl … cert``,
no plain ``host`` line): every connection that succeeds here is encrypted and
authenticated by the certificate tillpay presented. The server certificate names
``localhost`` only, so ``127.0.0.1`` is a host name mismatch.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import IN_CI
from tillpay.kit.db import build_ssl_context, create_engine
from tillpay.settings import ConfigurationError, Settings

ROLE = "tillpay_tls"
KEY_PASSWORD = "correct horse battery staple"
SESSION_SSL_SQL = (
    "SELECT current_user, s.ssl, s.version FROM pg_stat_ssl AS s WHERE s.pid = pg_backend_pid()"
)


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def make_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, *, server: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(common_name, ca.cert.subject, key)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        # DNS name only, deliberately: connecting by IP address must fail the host check.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> Path:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(0o600)
    return path


# --- the throw-away server -------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    rogue_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, its server (``localhost``) and client (``tillpay_tls``) pairs, a rogue CA."""
    out = tmp_path_factory.mktemp("pki")
    ca, rogue = make_ca("tillpay test CA"), make_ca("rogue CA")
    server, client = issue(ca, "localhost", server=True), issue(ca, ROLE, server=False)
    return Pki(
        ca=write_cert(out / "ca.crt", ca.cert),
        rogue_ca=write_cert(out / "rogue-ca.crt", rogue.cert),
        server_cert=write_cert(out / "server.crt", server.cert),
        server_key=write_key(out / "server.key", server.key),
        client_cert=write_cert(out / "client.crt", client.cert),
        client_key=write_key(out / "client.key", client.key),
        client_key_encrypted=write_key(out / "client-enc.key", client.key, KEY_PASSWORD),
    )


@dataclass(frozen=True)
class TLSServer:
    port: int
    pki: Pki


def _unavailable(reason: str) -> None:
    # Same convention as tests/conftest.py: mandatory on CI, optional on a laptop.
    if IN_CI:
        pytest.fail(f"TLS PostgreSQL is required on CI: {reason}", pytrace=False)
    pytest.skip(f"TLS PostgreSQL unavailable: {reason}")


def _pg_bin() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    found = candidates[-1] if candidates else shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[TLSServer]:
    """A private PostgreSQL with ``ssl=on`` and certificate auth; removed afterwards."""
    bindir = _pg_bin()
    if bindir is None:
        _unavailable("initdb not found under /usr/lib/postgresql/*/bin or on PATH")
        return
    # PostgreSQL refuses to run as root: drop to the postgres account when we are root.
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            _unavailable("running as root needs runuser and a postgres account")
            return
        prefix = [runuser, "-u", "postgres", "--"]

    root = Path(tempfile.mkdtemp(prefix="tillpay-pgtls-"))
    started = False
    try:
        data, sockets, tls = root / "data", root / "sock", root / "tls"
        sockets.mkdir(mode=0o700)
        tls.mkdir()
        port = _free_port()

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            # cwd inside the temp dir: the postgres account may not read the caller's cwd.
            return subprocess.run(  # noqa: S603 - fixed argv, no shell
                [*prefix, *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
            )

        def must(*args: str) -> None:
            result = run(*args)
            if result.returncode != 0:
                log = root / "server.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip()}\n{tail}")

        # The server needs its own copies: owned by postgres, key mode 0600.
        for source, name in ((pki.server_cert, "server.crt"), (pki.ca, "ca.crt")):
            shutil.copyfile(source, tls / name)
        shutil.copyfile(pki.server_key, tls / "server.key")
        (tls / "server.key").chmod(0o600)
        if owner is not None:
            _chown_tree(root, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)

        must(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "--no-sync",
            "--no-instructions",
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=peer",
            "--auth-host=reject",
        )
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\n"
                f"port = {port}\n"
                f"unix_socket_directories = '{sockets}'\n"
                f"ssl = on\n"
                f"ssl_cert_file = '{tls / 'server.crt'}'\n"
                f"ssl_key_file = '{tls / 'server.key'}'\n"
                f"ssl_ca_file = '{tls / 'ca.crt'}'\n"
                "fsync = off\nmax_connections = 20\nshared_buffers = 16MB\n"
            )
        # TLS with a client certificate is the only way in over TCP; the superuser uses
        # the private unix socket (peer auth) to create the role.
        (data / "pg_hba.conf").write_text(
            "local all all peer\nhostssl all all 127.0.0.1/32 cert\n", encoding="utf-8"
        )
        started = True
        must(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start")
        must(
            str(bindir / "psql"),
            "-h",
            str(sockets),
            "-p",
            str(port),
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"CREATE ROLE {ROLE} LOGIN",
        )
        yield TLSServer(port=port, pki=pki)
    finally:
        # Never raises, so a failed start reports its own error rather than the stop's.
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def tls_settings(server: TLSServer, host: str = "localhost", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"postgresql+asyncpg://{ROLE}@{host}:{server.port}/postgres",
        "database_ssl_mode": "verify-full",
        "database_ssl_root_cert": server.pki.ca,
        "database_ssl_cert": server.pki.client_cert,
        "database_ssl_key": server.pki.client_key,
    }
    values.update(overrides)
    return Settings(**values)


async def session_info(settings: Settings) -> tuple[str, bool, str]:
    """Connect with tillpay's engine: the session's user, whether it is TLS, and the version."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(SESSION_SSL_SQL))).one()
    finally:
        await engine.dispose()
    return str(row[0]), bool(row[1]), str(row[2])


# --- behaviour against the real server -------------------------------------------------------


async def test_verify_full_with_the_right_ca_and_client_certificate_connects_over_tls(
    tls_server: TLSServer,
) -> None:
    user, encrypted, version = await session_info(tls_settings(tls_server))
    assert (user, encrypted) == (ROLE, True)
    assert version in ("TLSv1.2", "TLSv1.3")


async def test_verify_full_refuses_a_server_not_signed_by_the_configured_ca(
    tls_server: TLSServer,
) -> None:
    settings = tls_settings(tls_server, database_ssl_root_cert=tls_server.pki.rogue_ca)
    # The server's name is right, so only the chain can fail (OpenSSL's wording depends on
    # whether the server also sends its CA).
    chain_error = r"verify failed: (self-signed certificate in certificate chain|unable to get)"
    with pytest.raises(ssl.SSLCertVerificationError, match=chain_error):
        await session_info(settings)


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_cover(
    tls_server: TLSServer,
) -> None:
    with pytest.raises(
        ssl.SSLCertVerificationError, match=r"mismatch, certificate is not valid for '127\.0\.0\.1'"
    ):
        await session_info(tls_settings(tls_server, host="127.0.0.1"))


async def test_verify_ca_checks_the_chain_but_not_the_host_name(tls_server: TLSServer) -> None:
    settings = tls_settings(tls_server, host="127.0.0.1", database_ssl_mode="verify-ca")
    user, encrypted, _ = await session_info(settings)
    assert (user, encrypted) == (ROLE, True)


async def test_the_server_refuses_a_client_without_a_certificate(tls_server: TLSServer) -> None:
    settings = tls_settings(tls_server, database_ssl_cert=None, database_ssl_key=None)
    with pytest.raises(DBAPIError, match="requires a valid client certificate"):
        await session_info(settings)


async def test_an_encrypted_client_key_works_with_its_password(tls_server: TLSServer) -> None:
    settings = tls_settings(
        tls_server,
        database_ssl_key=tls_server.pki.client_key_encrypted,
        database_ssl_key_password=KEY_PASSWORD,
    )
    user, encrypted, _ = await session_info(settings)
    assert (user, encrypted) == (ROLE, True)


# --- build_ssl_context without a server ------------------------------------------------------


def _context(mode: str, **overrides: Any) -> ssl.SSLContext | None:
    return build_ssl_context(
        Settings(
            environment="test",
            database_url="postgresql+asyncpg://tillpay@db.internal/tillpay",
            database_ssl_mode=mode,
            **overrides,
        )
    )


def test_disable_builds_no_tls_context() -> None:
    assert _context("disable") is None


def test_require_encrypts_without_verifying_the_server() -> None:
    context = _context("require")
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_verify_ca_verifies_the_chain_but_not_the_host_name() -> None:
    context = _context("verify-ca")
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_verify_full_verifies_the_chain_and_the_host_name() -> None:
    context = _context("verify-full")
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_every_tls_mode_refuses_protocols_older_than_tls_1_2(mode: str) -> None:
    context = _context(mode)
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_encrypted_client_key_without_a_password_is_a_configuration_error(pki: Pki) -> None:
    # Never an interactive pass phrase prompt: a server must fail fast and say why.
    with pytest.raises(ConfigurationError, match="TILLPAY_DATABASE_SSL_KEY_PASSWORD"):
        _context(
            "verify-full",
            database_ssl_cert=pki.client_cert,
            database_ssl_key=pki.client_key_encrypted,
        )


def test_a_wrong_client_key_password_is_refused(pki: Pki) -> None:
    with pytest.raises(ssl.SSLError):
        _context(
            "verify-full",
            database_ssl_cert=pki.client_cert,
            database_ssl_key=pki.client_key_encrypted,
            database_ssl_key_password="not the password",
        )
