"""``/dev/mail``, the development mailbox viewer: lists the mailbox folder newest first,
shows one message decoded with its HTML sandboxed, opens nothing outside the folder, and
does not exist outside development."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ClientFactory
from tillpay.notifications.mail import EmailMessageSpec, FileMailer

QP_MESSAGE = (
    b"From: tillpay <no-reply@localhost>\r\n"
    b"To: ada@shop.example\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_receipt?=\r\n"
    b"Date: Wed, 02 Dec 2026 14:03:11 +0000\r\n"
    b"X-Tillpay-Category: receipt\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"One caf=C3=A9 au lait, a line long enough to be folded by the encoder so it =\r\n"
    b"continues here. Track it at https://shop.example/orders/ord_1?x=3D1\r\n"
    b"--b\r\n"
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    # <p>Hello <b>ada</b><script>alert(1)</script> <a href="https://shop.example/x">x</a></p>
    b"PHA+SGVsbG8gPGI+YWRhPC9iPjxzY3JpcHQ+YWxlcnQoMSk8L3NjcmlwdD4gPGEgaHJlZj0iaHR0\r\n"
    b"cHM6Ly9zaG9wLmV4YW1wbGUveCI+eDwvYT48L3A+\r\n"
    b"--b--\r\n"
)
QP_ID = "20261202T140311000000Z-receipt-0123abcd"


@pytest.fixture
async def dev(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(environment="development") as client:
        yield client


@pytest.fixture
def planted(mail_dir: Path) -> Path:
    """The mailbox folder holding QP_MESSAGE; the same message beside the folder
    (``outside.eml``) and in it under a name FileMailer never writes (``secret.eml``),
    where no request may reach it."""
    mail_dir.mkdir()
    (mail_dir / f"{QP_ID}.eml").write_bytes(QP_MESSAGE)
    (mail_dir / "secret.eml").write_bytes(QP_MESSAGE)
    (mail_dir.parent / "outside.eml").write_bytes(QP_MESSAGE)
    return mail_dir


def file_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.eml"))


def spec(to: str, subject: str, category: str) -> EmailMessageSpec:
    return EmailMessageSpec(to=to, subject=subject, text="Hello.", category=category)


async def test_the_mailbox_lists_messages_newest_first(
    dev: httpx.AsyncClient, mail_dir: Path
) -> None:
    mailer = FileMailer(mail_dir)
    await mailer.send(spec("first@shop.example", "Older", "welcome"))
    await mailer.send(spec("second@shop.example", "Newer <b>", "new_login"))
    page = await dev.get("/dev/mail")
    assert page.status_code == 200
    rows = re.findall(
        r"<tr><td>([^<]+ UTC)</td><td>([^<]+)</td><td><a href='([^']+)'>([^<]+)</a>"
        r"</td><td>([^<]+)</td></tr>",
        page.text,
    )
    assert [(to, subject, category) for _, to, _, subject, category in rows] == [
        ("second@shop.example", "Newer &lt;b&gt;", "new_login"),
        ("first@shop.example", "Older", "welcome"),
    ]
    names = file_names(mail_dir)
    assert [href for _, _, href, _, _ in rows] == [f"/dev/mail/{n}" for n in reversed(names)]


async def test_a_message_is_shown_with_its_quoted_printable_text_decoded(
    dev: httpx.AsyncClient, planted: Path
) -> None:
    page = await dev.get(f"/dev/mail/{QP_ID}")
    assert page.status_code == 200
    assert "Café receipt" in page.text
    assert "One café au lait, a line long enough to be folded by the encoder so it continues" in (
        page.text
    )


async def test_the_html_part_is_shown_escaped_in_a_sandboxed_frame(
    dev: httpx.AsyncClient, planted: Path
) -> None:
    page = await dev.get(f"/dev/mail/{QP_ID}")
    [frame] = re.findall(r"<iframe [^>]*>", page.text)
    assert "sandbox='allow-popups allow-popups-to-escape-sandbox'" in frame
    assert "allow-scripts" not in frame
    assert "allow-same-origin" not in frame
    # The decoded base64 HTML lives only inside the srcdoc attribute, escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in frame
    assert "<script>" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert page.headers["cache-control"] == "no-store"


async def test_links_in_the_html_part_open_in_a_new_tab_after_the_doctype(
    dev: httpx.AsyncClient, mail_dir: Path
) -> None:
    html = '<!doctype html><p><a href="https://shop.example/x">x</a></p>'
    await FileMailer(mail_dir).send(
        EmailMessageSpec(to="a@shop.example", subject="s", text="t", html=html, category="c")
    )
    [name] = file_names(mail_dir)
    page = await dev.get(f"/dev/mail/{name}")
    [srcdoc] = re.findall(r'srcdoc="([^"]*)"', page.text)
    assert srcdoc.startswith("&lt;!doctype html&gt;&lt;base target=&quot;_blank&quot;&gt;&lt;p&gt;")


async def test_the_links_of_a_message_are_clickable(dev: httpx.AsyncClient, planted: Path) -> None:
    page = await dev.get(f"/dev/mail/{QP_ID}")
    hrefs = re.findall(r'<a href="([^"]+)" target=_blank rel="noopener noreferrer">', page.text)
    assert "https://shop.example/orders/ord_1?x=1" in hrefs
    assert "https://shop.example/x" in hrefs


@pytest.mark.parametrize(
    "message_id",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "secret",
        f"{QP_ID}.eml",
        f"..%2F{QP_ID}",
        "20261202T140311000000Z-..-0123abcd",
    ],
)
async def test_a_message_id_that_is_not_a_mailbox_file_name_is_refused(
    dev: httpx.AsyncClient, planted: Path, message_id: str
) -> None:
    page = await dev.get(f"/dev/mail/{message_id}")
    assert page.status_code == 404
    assert "Café" not in page.text


async def test_a_symlink_in_the_mailbox_is_not_followed(
    dev: httpx.AsyncClient, planted: Path
) -> None:
    os.replace(planted / f"{QP_ID}.eml", planted / "moved")
    os.symlink(planted.parent / "outside.eml", planted / f"{QP_ID}.eml")
    assert (await dev.get(f"/dev/mail/{QP_ID}")).status_code == 404
    assert "Café" not in (await dev.get("/dev/mail")).text


async def test_the_mailbox_does_not_exist_outside_development(
    client: httpx.AsyncClient, planted: Path
) -> None:
    for path in ("/dev/mail", f"/dev/mail/{QP_ID}"):
        response = await client.get(path)
        assert response.status_code == 404
        assert "Café" not in response.text
