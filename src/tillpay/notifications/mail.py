"""Transactional email behind one small interface, `Mailer`.

* `SmtpMailer` delivers over SMTP with TLS required: STARTTLS by default or implicit TLS
  (port 465), certificates always verified (system trust store or a given CA file).
  Plain-text SMTP needs an explicit ``allow_plaintext=True`` (local test servers only)
  and never carries credentials.
* `FileMailer`, the zero-set-up default, writes each message as an ``.eml`` file that a
  developer can open with any mail client; tests read them back with `read_mailbox`.

Mail bodies carry single-use tokens (verification and reset links), so neither mailer
logs a body, a link or a full recipient address: only the category, the recipient's
domain, the Message-ID and, for files, the path and subject.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

import aiosmtplib
from pydantic import SecretStr

from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

__all__ = [
    "DEFAULT_MAIL_DIR",
    "DEFAULT_MAIL_FROM",
    "EmailMessageSpec",
    "FileMailer",
    "MailDeliveryError",
    "Mailer",
    "SmtpMailer",
    "build_mailer",
    "build_message",
    "extract_links",
    "mailer_from_settings",
    "read_mailbox",
]

log = get_logger(__name__)

DEFAULT_MAIL_DIR: Final = Path("var/mail")
DEFAULT_MAIL_FROM: Final = "tillpay <no-reply@localhost>"

# The category ends up in file names, so it is restricted to a path-safe alphabet.
_CATEGORY_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TAG_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LINK_RE: Final = re.compile(r"https?://[^\s<>\"']+")


class MailDeliveryError(Exception):
    """A message could not be handed to the mail server; safe to retry later."""


@dataclass(frozen=True, kw_only=True)
class EmailMessageSpec:
    """What to send: one recipient, a plain-text body and an optional HTML alternative.

    ``category`` names the kind of mail (``verify_email``, ``password_reset``,
    ``security_notice``...). ``tags`` travel as ``X-Tillpay-Tag: key=value`` headers, so
    the recipient can see them: never put a token or secret there.
    """

    to: str
    subject: str
    text: str
    html: str | None = None
    category: str
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _parse_single_address(self.to, "to")
        if _has_line_break(self.subject):
            raise ValueError("subject must not contain line breaks")
        if not _CATEGORY_RE.fullmatch(self.category):
            raise ValueError(f"invalid mail category: {self.category!r}")
        for key, value in self.tags.items():
            if not _TAG_KEY_RE.fullmatch(key) or _has_line_break(value):
                raise ValueError(f"invalid mail tag: {key!r}")
        # A read-only copy keeps the frozen spec immutable even if the caller's dict changes.
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))


class Mailer(Protocol):
    """Anything that can send an `EmailMessageSpec`."""

    async def send(self, message: EmailMessageSpec) -> None:
        """Send ``message``; raise `MailDeliveryError` when it cannot be handed over."""
        ...


def _has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value


def _parse_single_address(value: str, what: str) -> Address:
    """Parse one RFC 5322 address (``"Name <user@host>"`` or ``user@host``)."""
    if _has_line_break(value):
        raise ValueError(f"{what} must not contain line breaks")
    header = policy.default.header_factory(what, value)
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1 or header.defects:
        raise ValueError(f"{what} must be exactly one email address")
    address: Address = addresses[0]
    if not address.username or not address.domain:
        raise ValueError(f"{what} must be exactly one email address")
    return address


def build_message(spec: EmailMessageSpec, *, from_address: str) -> EmailMessage:
    """Build the RFC 5322 message for ``spec``, with a fresh Message-ID and a UTC Date."""
    sender = _parse_single_address(from_address, "from")
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = from_address
    message["To"] = spec.to
    message["Subject"] = spec.subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    # The sender's domain instead of the default socket.getfqdn(), which may block on DNS.
    message["Message-ID"] = email.utils.make_msgid(domain=sender.domain)
    message["X-Tillpay-Category"] = spec.category
    for key, value in spec.tags.items():
        message["X-Tillpay-Tag"] = f"{key}={value}"
    message.set_content(spec.text)
    if spec.html is not None:
        message.add_alternative(spec.html, subtype="html")
    return message


def _recipient_domain(spec: EmailMessageSpec) -> str:
    return _parse_single_address(spec.to, "to").domain


class SmtpMailer:
    """Deliver mail through an SMTP server over TLS (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        from_address: str = DEFAULT_MAIL_FROM,
        username: str | None = None,
        password: str | SecretStr | None = None,
        start_tls: bool = True,
        use_tls: bool = False,
        ca_file: Path | str | None = None,
        timeout: float = 10.0,
        allow_plaintext: bool = False,
    ) -> None:
        """Configure the mailer; raises ValueError for an unsafe or invalid combination.

        ``use_tls`` selects implicit TLS (usually port 465) and overrides ``start_tls``.
        With ``start_tls=True`` a server that does not offer STARTTLS is an error, never
        a silent downgrade. ``ca_file`` replaces the system trust store (private CA).
        """
        _parse_single_address(from_address, "from")
        encrypted = use_tls or start_tls
        if not encrypted and not allow_plaintext:
            raise ValueError("SMTP without TLS needs allow_plaintext=True (local test servers)")
        if not encrypted and username is not None:
            raise ValueError("SMTP credentials are never sent without TLS")
        if isinstance(password, str):
            password = SecretStr(password)
        self.host = host
        self.port = port
        self.from_address = from_address
        self.username = username
        self._password = password
        self.use_tls = use_tls
        self.start_tls = start_tls and not use_tls
        self.timeout = timeout
        self._tls_context = _tls_context(ca_file) if encrypted else None

    def __repr__(self) -> str:
        mode = "tls" if self.use_tls else "starttls" if self.start_tls else "plaintext"
        return f"SmtpMailer(host={self.host!r}, port={self.port}, mode={mode!r})"

    async def send(self, message: EmailMessageSpec) -> None:
        """Deliver ``message``; raises `MailDeliveryError` on any SMTP, TLS or network error."""
        mime = build_message(message, from_address=self.from_address)
        context = {
            "category": message.category,
            "recipient_domain": _recipient_domain(message),
            "message_id": mime["Message-ID"],
        }
        password = None if self._password is None else self._password.get_secret_value()
        try:
            await aiosmtplib.send(
                mime,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                tls_context=self._tls_context,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail.failed", error=type(exc).__name__, **context)
            raise MailDeliveryError(
                f"SMTP delivery via {self.host}:{self.port} failed: {exc}"
            ) from exc
        log.info("mail.sent", **context)


def _tls_context(ca_file: Path | str | None) -> ssl.SSLContext:
    # Verifies the chain and the host name; a CA file replaces the system trust store.
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class FileMailer:
    """Write each message as an ``.eml`` file (mode 0600) in a private directory."""

    def __init__(
        self, directory: Path | str = DEFAULT_MAIL_DIR, *, from_address: str = DEFAULT_MAIL_FROM
    ) -> None:
        """Configure the mailbox; the directory is created (mode 0700) on first send."""
        _parse_single_address(from_address, "from")
        self.directory = Path(directory)
        self.from_address = from_address

    def __repr__(self) -> str:
        return f"FileMailer(directory={str(self.directory)!r})"

    async def send(self, message: EmailMessageSpec) -> None:
        """Save ``message`` and log a one-line summary without body or links."""
        mime = build_message(message, from_address=self.from_address)
        path = await asyncio.to_thread(self._write, mime, message.category)
        log.info(
            "mail.saved",
            category=message.category,
            path=str(path),
            subject=message.subject,
            message_id=mime["Message-ID"],
        )

    def _write(self, mime: EmailMessage, category: str) -> Path:
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; make the result exact.
            self.directory.chmod(0o700)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{category}-{secrets.token_hex(4)}.eml"
        # O_EXCL and O_NOFOLLOW: never overwrite a file or follow a planted symlink.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(mime.as_bytes(policy=policy.SMTP))
        return path

    def messages(self, *, to: str | None = None, category: str | None = None) -> list[EmailMessage]:
        """Return the saved messages, oldest first; see `read_mailbox`."""
        return read_mailbox(self.directory, to=to, category=category)


def read_mailbox(
    directory: Path | str, *, to: str | None = None, category: str | None = None
) -> list[EmailMessage]:
    """Parse the ``.eml`` files in ``directory``, oldest first (newest is ``[-1]``).

    ``to`` keeps messages for that address (compared case-insensitively); ``category``
    keeps one kind of mail. A missing directory is an empty mailbox.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    parser = BytesParser(policy=policy.default)
    headers = BytesHeaderParser(policy=policy.default)
    found: list[EmailMessage] = []
    # File names start with a UTC timestamp, so name order is send order.
    for path in sorted(folder.glob("*.eml")):
        if category is not None and _named_category(path.name) not in (None, category):
            continue  # the name says it is another kind: not even read
        data = path.read_bytes()
        if category is not None or to is not None:
            # The headers decide; only a message that is kept is parsed whole (the body
            # is most of the cost, and a test's mailbox holds every mail of the test).
            head = headers.parsebytes(data)
            if category is not None and head["X-Tillpay-Category"] != category:
                continue
            if to is not None and not _addressed_to(head, to):
                continue
        found.append(parser.parsebytes(data))
    return found


_FILE_NAME = re.compile(r"^\d{8}T\d{12}Z-(?P<category>.+)-[0-9a-f]{8}\.eml$")


def _named_category(name: str) -> str | None:
    """The category in a name :class:`FileMailer` wrote, or None for any other name."""
    match = _FILE_NAME.match(name)
    return match["category"] if match else None


def _addressed_to(message: Message, address: str) -> bool:
    wanted = _parse_single_address(address, "to").addr_spec.lower()
    header = message["To"]
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    return any(a.addr_spec.lower() == wanted for a in addresses)


def extract_links(message: EmailMessage) -> list[str]:
    """Return the http(s) links in the plain-text body of ``message``, in order."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return []
    text = body.get_content()
    return _LINK_RE.findall(text) if isinstance(text, str) else []


def mailer_from_settings(
    *,
    smtp_host: str | None,
    smtp_port: int = 587,
    smtp_username: str | None = None,
    smtp_password: str | SecretStr | None = None,
    smtp_starttls: bool = True,
    smtp_use_tls: bool = False,
    smtp_ca_file: Path | str | None = None,
    smtp_timeout: float = 10.0,
    smtp_allow_plaintext: bool = False,
    mail_from: str = DEFAULT_MAIL_FROM,
    mail_dir: Path | str = DEFAULT_MAIL_DIR,
) -> Mailer:
    """Return an `SmtpMailer` when an SMTP host is configured, else a `FileMailer`."""
    if smtp_host:
        return SmtpMailer(
            host=smtp_host,
            port=smtp_port,
            from_address=mail_from,
            username=smtp_username,
            password=smtp_password,
            start_tls=smtp_starttls,
            use_tls=smtp_use_tls,
            ca_file=smtp_ca_file,
            timeout=smtp_timeout,
            allow_plaintext=smtp_allow_plaintext,
        )
    return FileMailer(mail_dir, from_address=mail_from)


def build_mailer(settings: Settings) -> Mailer:
    """The configured mailer: SMTP when a host is set, else `.eml` files in the mailbox."""
    return mailer_from_settings(
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_username=settings.smtp_username,
        smtp_password=settings.smtp_password,
        smtp_starttls=settings.smtp_starttls,
        smtp_use_tls=settings.smtp_use_tls,
        smtp_ca_file=settings.smtp_ca_file,
        smtp_allow_plaintext=settings.smtp_allow_plaintext,
        smtp_timeout=settings.smtp_timeout_seconds,
        mail_from=settings.mail_from,
        mail_dir=settings.mailbox_dir,
    )
