"""Mail delivery: the local mailbox (FileMailer) and SMTP over TLS against a real server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from structlog.testing import capture_logs

from tillpay.notifications.mail import (
    EmailMessageSpec,
    FileMailer,
    MailDeliveryError,
    SmtpMailer,
    extract_links,
    mailer_from_settings,
    read_mailbox,
)

TOKEN = "tok3n-f0r-ada-only"
LINK = f"https://shop.example/verify?token={TOKEN}"
FROM = "tillpay <no-reply@shop.example>"


def spec(**overrides: Any) -> EmailMessageSpec:
    fields: dict[str, Any] = {
        "to": "ada@example.com",
        "subject": "Confirm your email",
        "text": f"Open {LINK} to confirm.",
        "html": f'<p><a href="{LINK}">Confirm</a></p>',
        "category": "verify_email",
    }
    return EmailMessageSpec(**(fields | overrides))


# --- the message -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"subject": "Hi\r\nBcc: eve@evil.example"}, id="subject-crlf"),
        pytest.param({"to": "ada@example.com\r\nBcc: eve@evil.example"}, id="to-crlf"),
        pytest.param({"to": "ada@example.com, eve@evil.example"}, id="two-recipients"),
        pytest.param({"to": "not an address"}, id="no-domain"),
        pytest.param({"category": "../../etc/passwd"}, id="category-path"),
        pytest.param({"tags": {"user": "u1\nBcc: eve@evil.example"}}, id="tag-crlf"),
        pytest.param({"tags": {"bad key": "x"}}, id="tag-key"),
    ],
)
def test_spec_refuses_header_injection_and_unsafe_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        spec(**overrides)


def test_spec_tags_cannot_be_changed_through_the_callers_dict() -> None:
    tags = {"user": "usr_1"}
    message = spec(tags=tags)
    tags["user"] = "usr_2"
    assert message.tags == {"user": "usr_1"}


# --- FileMailer ------------------------------------------------------------------------


async def test_file_mailer_writes_a_parseable_eml_with_text_and_html(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "mail", from_address=FROM)
    await mailer.send(spec(tags={"user": "usr_1"}))

    [message] = mailer.messages()
    assert message["To"] == "ada@example.com"
    assert message["From"] == FROM
    assert message["Subject"] == "Confirm your email"
    assert message["Message-ID"].endswith("@shop.example>")
    assert message["Date"].datetime.utcoffset() == dt.timedelta(0)
    assert message["X-Tillpay-Category"] == "verify_email"
    assert message.get_all("X-Tillpay-Tag") == ["user=usr_1"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == f"Open {LINK} to confirm."
    assert LINK in html.get_content()


async def test_file_mailer_file_is_an_rfc5322_message_named_by_time_and_category(
    tmp_path: Path,
) -> None:
    await FileMailer(tmp_path, from_address=FROM).send(spec(html=None))

    [path] = list(tmp_path.glob("*.eml"))  # noqa: ASYNC240 - test inspection
    assert path.name.split("-")[1] == "verify_email"
    raw = path.read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert message.get_content_type() == "text/plain"


async def test_file_mailer_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "mail"
    await FileMailer(directory, from_address=FROM).send(spec())

    [path] = directory.glob("*.eml")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_file_mailer_summary_log_names_the_file_but_not_the_body(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, from_address=FROM)
    with capture_logs() as logs:
        await mailer.send(spec())

    [path] = list(tmp_path.glob("*.eml"))  # noqa: ASYNC240 - test inspection
    [entry] = [e for e in logs if e["event"] == "mail.saved"]
    assert entry["category"] == "verify_email"
    assert entry["path"] == str(path)
    assert entry["subject"] == "Confirm your email"
    assert TOKEN not in repr(logs)
    assert "Open " not in repr(logs)


async def test_read_mailbox_returns_messages_oldest_first_and_filters(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, from_address=FROM)
    await mailer.send(spec(subject="first"))
    await mailer.send(spec(subject="second", to="Grace <grace@example.com>"))
    await mailer.send(spec(subject="third", category="password_reset"))

    assert [m["Subject"] for m in read_mailbox(tmp_path)] == ["first", "second", "third"]
    assert [m["Subject"] for m in read_mailbox(tmp_path, to="GRACE@example.com")] == ["second"]
    assert [m["Subject"] for m in read_mailbox(tmp_path, category="password_reset")] == ["third"]


def test_read_mailbox_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert read_mailbox(tmp_path / "nothing-yet") == []


async def test_extract_links_finds_the_links_of_the_plain_text_body(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, from_address=FROM)
    await mailer.send(spec(text=f"Confirm: {LINK}\nHelp: http://shop.example/help\n"))

    [message] = mailer.messages()
    assert extract_links(message) == [LINK, "http://shop.example/help"]


# --- mailer_from_settings --------------------------------------------------------------


def test_without_smtp_host_mail_goes_to_the_local_mailbox(tmp_path: Path) -> None:
    mailer = mailer_from_settings(smtp_host=None, mail_dir=tmp_path, mail_from=FROM)
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path


def test_with_smtp_host_mail_goes_over_smtp_with_starttls() -> None:
    mailer = mailer_from_settings(smtp_host="smtp.example", smtp_password="pw", mail_from=FROM)
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.start_tls, mailer.use_tls) == (
        "smtp.example",
        587,
        True,
        False,
    )


# --- SmtpMailer configuration ----------------------------------------------------------


def test_smtp_without_tls_must_be_explicitly_allowed() -> None:
    with pytest.raises(ValueError, match="allow_plaintext"):
        SmtpMailer(host="127.0.0.1", start_tls=False, from_address=FROM)


def test_smtp_credentials_are_never_configured_without_tls() -> None:
    with pytest.raises(ValueError, match="without TLS"):
        SmtpMailer(
            host="127.0.0.1",
            start_tls=False,
            allow_plaintext=True,
            username="u",
            password="p",
            from_address=FROM,
        )


def test_smtp_mailer_repr_hides_the_password() -> None:
    mailer = SmtpMailer(host="smtp.example", username="u", password="hunter2", from_address=FROM)
    assert "hunter2" not in repr(mailer)
    assert "hunter2" not in repr(vars(mailer))


def test_smtp_mailer_refuses_an_invalid_from_address() -> None:
    with pytest.raises(ValueError, match="from"):
        SmtpMailer(host="smtp.example", from_address="no-reply")


# --- a real SMTP server (aiosmtpd) -----------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd handler that keeps what it received and whether TLS protected it."""

    envelopes: list[Envelope] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd looks up
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.envelopes.append(envelope)
        # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
        transport = server.transport
        implicit = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.tls.append(session.ssl is not None or implicit)
        return "250 OK"


@dataclass
class Pki:
    """A private CA and a server certificate for 127.0.0.1 issued by it."""

    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tillpay test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return Pki(ca_file=ca_file, server_context=context)


def accept_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(b"mailer", b"s3cret")
    # handled=False: aiosmtpd then answers the failure itself (535).
    return AuthResult(success=ok, handled=False)


@asynccontextmanager
async def smtp_server(
    *,
    starttls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
    port: int = 0,
    inbox: Inbox | None = None,
    **smtp_options: Any,
) -> AsyncIterator[tuple[int, Inbox]]:
    """Run aiosmtpd on 127.0.0.1 (on ``port``, else a free one), in the test's own event
    loop, collecting into ``inbox`` (else a new one)."""
    inbox = inbox if inbox is not None else Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            inbox,
            hostname="localhost",
            tls_context=starttls_context,
            loop=loop,
            **smtp_options,
        ),
        host="127.0.0.1",
        port=port,
        ssl=implicit_tls_context,
    )
    try:
        yield server.sockets[0].getsockname()[1], inbox
    finally:
        server.close()
        await server.wait_closed()


def received(inbox: Inbox) -> Any:
    [envelope] = inbox.envelopes
    assert isinstance(envelope.content, bytes)
    return BytesParser(policy=policy.default).parsebytes(envelope.content)


async def test_smtp_plaintext_delivery_when_explicitly_allowed() -> None:
    async with smtp_server() as (port, inbox):
        mailer = SmtpMailer(
            host="127.0.0.1", port=port, start_tls=False, allow_plaintext=True, from_address=FROM
        )
        await mailer.send(spec())

    assert inbox.envelopes[0].rcpt_tos == ["ada@example.com"]
    assert inbox.envelopes[0].mail_from == "no-reply@shop.example"
    message = received(inbox)
    assert message["Subject"] == "Confirm your email"
    assert extract_links(message) == [LINK]
    assert message.get_body(preferencelist=("html",)) is not None


async def test_smtp_log_carries_category_domain_and_message_id_only() -> None:
    async with smtp_server() as (port, inbox):
        mailer = SmtpMailer(
            host="127.0.0.1", port=port, start_tls=False, allow_plaintext=True, from_address=FROM
        )
        with capture_logs() as logs:
            await mailer.send(spec())

    [entry] = [e for e in logs if e["event"] == "mail.sent"]
    assert entry["category"] == "verify_email"
    assert entry["recipient_domain"] == "example.com"
    assert entry["message_id"] == received(inbox)["Message-ID"]
    assert "ada@" not in repr(logs)
    assert TOKEN not in repr(logs)


async def test_required_starttls_fails_loudly_when_the_server_does_not_offer_it() -> None:
    async with smtp_server() as (port, inbox):
        mailer = SmtpMailer(host="127.0.0.1", port=port, from_address=FROM)
        with pytest.raises(MailDeliveryError, match="STARTTLS"):
            await mailer.send(spec())

    assert inbox.envelopes == []


async def test_starttls_delivery_succeeds_with_the_private_ca_configured(pki: Pki) -> None:
    async with smtp_server(starttls_context=pki.server_context) as (port, inbox):
        mailer = SmtpMailer(host="127.0.0.1", port=port, ca_file=pki.ca_file, from_address=FROM)
        await mailer.send(spec())

    assert inbox.tls == [True]
    assert received(inbox)["To"] == "ada@example.com"


async def test_starttls_refuses_a_certificate_from_an_untrusted_ca(pki: Pki) -> None:
    async with smtp_server(starttls_context=pki.server_context) as (port, inbox):
        mailer = SmtpMailer(host="127.0.0.1", port=port, from_address=FROM)
        with pytest.raises(MailDeliveryError) as failure:
            await mailer.send(spec())

    assert isinstance(failure.value.__cause__, ssl.SSLCertVerificationError)
    assert inbox.envelopes == []


async def test_implicit_tls_delivery_succeeds_with_the_private_ca_configured(pki: Pki) -> None:
    async with smtp_server(implicit_tls_context=pki.server_context) as (port, inbox):
        mailer = SmtpMailer(
            host="127.0.0.1", port=port, use_tls=True, ca_file=pki.ca_file, from_address=FROM
        )
        await mailer.send(spec())

    assert inbox.tls == [True]


async def test_credentials_are_sent_after_starttls(pki: Pki) -> None:
    async with smtp_server(
        starttls_context=pki.server_context,
        require_starttls=True,
        auth_required=True,
        authenticator=accept_login,
    ) as (port, inbox):
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=port,
            ca_file=pki.ca_file,
            username="mailer",
            password="s3cret",
            from_address=FROM,
        )
        await mailer.send(spec())

    assert inbox.tls == [True]


async def test_wrong_smtp_credentials_are_a_delivery_error(pki: Pki) -> None:
    async with smtp_server(
        starttls_context=pki.server_context,
        require_starttls=True,
        auth_required=True,
        authenticator=accept_login,
    ) as (port, inbox):
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=port,
            ca_file=pki.ca_file,
            username="mailer",
            password="wrong",
            from_address=FROM,
        )
        with pytest.raises(MailDeliveryError):
            await mailer.send(spec())

    assert inbox.envelopes == []


async def test_unreachable_smtp_server_is_a_delivery_error() -> None:
    async with smtp_server() as (port, _):
        pass  # the port was just free and is closed again
    mailer = SmtpMailer(
        host="127.0.0.1",
        port=port,
        start_tls=False,
        allow_plaintext=True,
        timeout=2,
        from_address=FROM,
    )
    with pytest.raises(MailDeliveryError):
        await mailer.send(spec())


async def test_a_mail_saved_under_another_name_is_still_filtered_by_its_headers(
    tmp_path: Path,
) -> None:
    mailer = FileMailer(tmp_path, from_address=FROM)
    await mailer.send(spec(subject="kept", category="password_reset"))
    [saved] = list(tmp_path.glob("*.eml"))  # noqa: ASYNC240 - test inspection
    # Renamed by hand (or copied in): the name no longer says its category.
    saved.rename(tmp_path / "copied-in.eml")
    await mailer.send(spec(subject="other"))

    assert [m["Subject"] for m in read_mailbox(tmp_path, category="password_reset")] == ["kept"]
    assert [m["Subject"] for m in read_mailbox(tmp_path, category="verify_email")] == ["other"]
    kept = read_mailbox(tmp_path, category="password_reset")[0]
    assert kept.get_body(preferencelist=("plain",)) is not None  # parsed whole
