"""``/dev/mail``: the mailbox folder's ``.eml`` files in a browser, in development only
(`create_app` adds these routes only with ``TILLPAY_ENVIRONMENT=development``; elsewhere
the paths are a 404).

A message is named by its file name, checked against the exact form `FileMailer` writes,
and opened only inside the mailbox folder (no symlink followed), so no path leads out of
it. Its HTML part is shown in an iframe sandboxed without scripts or same-origin rights,
under this page's CSP (which a ``srcdoc`` frame inherits: no script, no fetch, no image);
its links open in a new tab."""

from __future__ import annotations

import asyncio
import email.utils
import html
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tillpay.settings import Settings

router = APIRouter(prefix="/dev/mail", include_in_schema=False)

#: ``FileMailer``'s file names: UTC stamp, category, 8 hex digits (no ``/``, no ``..``
#: component, no leading dot).
MESSAGE_ID: Final = re.compile(r"[0-9]{8}T[0-9]{12}Z-[a-z0-9][a-z0-9_.-]{0,63}-[0-9a-f]{8}")
#: Newest messages listed.
LISTED: Final = 200
#: Larger files are not shown (a development mailbox holds small messages).
MAX_BYTES: Final = 5 * 1024 * 1024
_LINK: Final = re.compile(r"https?://[^\s<>\"']+")

_STYLE = (
    "body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#1f2328}table{border-collapse:collapse;width:100%}td,th{text-align:left;"
    "padding:.35rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}"
    "pre{white-space:pre-wrap;background:#f6f8fa;padding:1rem;border-radius:6px}"
    "iframe{width:100%;height:32rem;border:1px solid #d0d7de;border-radius:6px}"
)
# 'unsafe-inline' styles because the mail's HTML (in the srcdoc frame, which inherits this
# policy) styles with attributes; scripts, fetches, images and forms stay forbidden. A
# srcdoc frame fetches nothing, so no frame-src is needed for it.
CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Summary:
    id: str
    sent: str
    to: str
    subject: str
    category: str


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · tillpay dev mail</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    response = HTMLResponse(document, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _read(folder: Path, message_id: str) -> EmailMessage | None:
    """The message named ``message_id`` in ``folder``, or None (bad name, absent, too big,
    not a regular file)."""
    if not MESSAGE_ID.fullmatch(message_id):
        return None
    try:
        fd = os.open(folder / f"{message_id}.eml", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        data = file.read()
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _sent(message: EmailMessage, message_id: str) -> str:
    try:
        moment = email.utils.parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        moment = datetime.strptime(message_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _header(message: EmailMessage, name: str) -> str:
    return str(message[name] or "")


def summaries(folder: Path) -> list[Summary]:
    """The newest messages of the mailbox folder, newest first."""
    if not folder.is_dir():
        return []
    # File names start with the UTC time of writing: name order is time order.
    names = sorted(p.stem for p in folder.glob("*.eml") if MESSAGE_ID.fullmatch(p.stem))
    found = []
    for name in reversed(names[-LISTED:]):
        message = _read(folder, name)
        if message is not None:
            found.append(
                Summary(
                    id=name,
                    sent=_sent(message, name),
                    to=_header(message, "To"),
                    subject=_header(message, "Subject"),
                    category=_header(message, "X-Tillpay-Category"),
                )
            )
    return found


def _linked(text: str) -> str:
    """``text`` escaped, its http(s) links clickable (opening in a new tab)."""
    parts, last = [], 0
    for match in _LINK.finditer(text):
        url = match.group(0)
        parts += [html.escape(text[last : match.start()]), _anchor(url)]
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


def _anchor(url: str) -> str:
    href = html.escape(url, quote=True)
    return f'<a href="{href}" target=_blank rel="noopener noreferrer">{html.escape(url)}</a>'


def _links_open_new_tabs(document: str) -> str:
    """``document`` with ``<base target=_blank>`` first (after a doctype, which must stay
    first): a link opens a new tab, allowed to leave the sandbox, not inside the frame."""
    base = '<base target="_blank">'
    doctype = re.match(r"\s*<!doctype[^>]*>", document, re.IGNORECASE)
    if doctype is None:
        return base + document
    return document[: doctype.end()] + base + document[doctype.end() :]


def _content(message: EmailMessage, subtype: str) -> str | None:
    """The decoded (quoted-printable, base64, charset) text of one body part."""
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _folder(request: Request) -> Path:
    settings: Settings = request.app.state.settings
    return settings.mailbox_dir


@router.get("")
async def mailbox(request: Request) -> HTMLResponse:
    folder = _folder(request)
    rows = "".join(
        f"<tr><td>{html.escape(m.sent)}</td><td>{html.escape(m.to)}</td>"
        f"<td><a href='/dev/mail/{html.escape(m.id)}'>{html.escape(m.subject) or '(none)'}</a>"
        f"</td><td>{html.escape(m.category)}</td></tr>"
        for m in await asyncio.to_thread(summaries, folder)
    )
    table = (
        f"<table><tr><th>sent</th><th>to</th><th>subject</th><th>category</th></tr>{rows}</table>"
        if rows
        else "<p>No mail yet.</p>"
    )
    return _page(
        "Mailbox",
        f"<h1>Mailbox</h1><p>{html.escape(str(folder))}, newest first.</p>{table}",
    )


@router.get("/{message_id}")
async def message(request: Request, message_id: str) -> HTMLResponse:
    found = await asyncio.to_thread(_read, _folder(request), message_id)
    if found is None:
        return _page("Not found", "<h1>No such message</h1><a href='/dev/mail'>Mailbox</a>", 404)
    return _page(_header(found, "Subject"), render_message(found))


def render_message(found: EmailMessage) -> str:
    """Headers, the plain-text part (links clickable), the HTML part in a sandboxed frame
    and every link of the message."""
    headers = "".join(
        f"<tr><th>{name}</th><td>{html.escape(_header(found, header))}</td></tr>"
        for name, header in (
            ("From", "From"),
            ("To", "To"),
            ("Date", "Date"),
            ("Subject", "Subject"),
            ("Category", "X-Tillpay-Category"),
        )
    )
    tags = ", ".join(str(v) for v in found.get_all("X-Tillpay-Tag") or [])
    headers += f"<tr><th>Tags</th><td>{html.escape(tags)}</td></tr>"
    body = f"<p><a href='/dev/mail'>← Mailbox</a></p><table>{headers}</table>"
    plain, rich = _content(found, "plain"), _content(found, "html")
    if plain is not None:
        body += f"<h2>Plain text</h2><pre>{_linked(plain)}</pre>"
    if rich is not None:
        srcdoc = html.escape(_links_open_new_tabs(rich), quote=True)
        body += (
            "<h2>HTML</h2><iframe title='HTML part' "
            f"sandbox='allow-popups allow-popups-to-escape-sandbox' srcdoc=\"{srcdoc}\"></iframe>"
        )
    links = dict.fromkeys(_LINK.findall(plain or "") + _LINK.findall(rich or ""))
    if links:
        items = "".join(f"<li>{_anchor(html.unescape(url))}</li>" for url in links)
        body += f"<h2>Links</h2><ul>{items}</ul>"
    return body
