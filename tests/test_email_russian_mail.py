"""The mail Russian offices really get, delivered over SMTP on 127.0.0.1 to our listener:
8-bit Windows-1251 / KOI8-R without a charset or under a name no codec has, HTML-only
letters from Outlook and web mail, forwarded letters, and out-of-office replies that say
so only in their own way. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64

import pytest
from api_fixtures import Running
from mail_fixtures import enquiry, messaging, smtp_send

from acd.core.model import Contact


async def deliver(r: Running, raw: bytes) -> Contact:
    """Deliver over SMTP; the sending server must get a 250 and the contact must exist."""
    port = messaging(r).smtp.port  # type: ignore[union-attr]
    assert await asyncio.to_thread(smtp_send, port, raw) == {}
    await r.settle()
    _, body = await r.call("GET", "/api/contacts?limit=1000", r.supervisor)
    [found] = [c for c in body["contacts"] if c["channel"] == "email"]
    contact = await r.server.store.get_contact(found["id"])
    assert contact is not None
    return contact


def head(message_id: str, *extra: bytes) -> bytes:
    lines = [b"To: sales@romashka.test", b"Message-ID: " + message_id.encode(), *extra]
    return b"\r\n".join(lines) + b"\r\n"


# ---- Windows-1251 and KOI8-R --------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        (None, "cp1251"),  # an old 1C / PHP mailer: 8-bit bytes and no charset at all
        (None, "koi8-r"),
        ("x-cp1251", "cp1251"),  # labels no Python codec has
        ("win-1251", "cp1251"),
        ("unknown-8bit", "koi8-r"),
        ("utf-8", "cp1251"),  # labelled UTF-8, written in Windows-1251
    ],
)
async def test_an_8bit_russian_letter_with_no_or_a_wrong_charset_is_read_not_bounced(
    mailed: Running, label: str | None, codec: str
) -> None:
    """It was refused with a 550 (the customer's enquiry bounced) when the label named no
    codec, and read as UTF-8 (all U+FFFD, keywords lost) when there was no label."""
    content_type = b"Content-Type: text/plain" + (f"; charset={label}".encode() if label else b"")
    raw = (
        head(
            "<cp-1@client.test>",
            b"From: " + "Иван Петров".encode(codec) + b" <ivan@client.test>",
            b"Subject: " + "Продление лицензии".encode(codec),
            b"MIME-Version: 1.0",
            content_type,
            b"Content-Transfer-Encoding: 8bit",
        )
        + b"\r\n"
        + "Добрый день! Срочно нужно продлить лицензию 1С на 10 мест.\r\n".encode(codec)
    )

    contact = await deliver(mailed, raw)

    assert contact.customer_name == "Иван Петров"
    assert contact.payload["subject"] == "Продление лицензии"
    assert contact.payload["text"] == "Добрый день! Срочно нужно продлить лицензию 1С на 10 мест."
    assert contact.criteria["purpose"] == "renewal" and contact.criteria["temperature"] == "hot"
    assert contact.language == "ru"


async def test_an_encoded_word_in_a_charset_no_codec_has_is_read(mailed: Running) -> None:
    subject = base64.b64encode("Продление лицензии".encode("cp1251")).decode()
    name = base64.b64encode("Петров, Иван".encode("koi8-r")).decode()
    raw = enquiry("<ew-1@client.test>", subject="x", text="Добрый день").replace(
        b"Subject: x", f"Subject: =?x-cp1251?B?{subject}?=".encode()
    )
    raw = raw.replace(
        b"From: =?utf-8?b?0JjQstCw0L0g0J/QtdGC0YDQvtCy?= <ivan@client.test>",
        f"From: =?x-koi8?B?{name}?= <ivan@client.test>".encode(),
    )
    assert b"x-koi8" in raw

    contact = await deliver(mailed, raw)

    assert contact.payload["subject"] == "Продление лицензии"
    assert contact.customer_name == "Петров, Иван"
    assert contact.criteria["purpose"] == "renewal"


# ---- HTML-only letters and forwarded ones -------------------------------------------------

# As a web mail or a mail client writes it: a style sheet that is not inside a comment, with
# kilobytes of Latin letters, then the letter, its Cyrillic partly written as entities.
STYLE = (
    "<style type='text/css'>"
    + "".join(
        f".mail-body-{i} p.MsoNormal {{margin: 0cm; font-family: Calibri, Arial, sans-serif; color: #1F497D}}\r\n"
        for i in range(40)
    )
    + "</style>"
)
HTML_LETTER = (
    "<html><head><meta charset='utf-8'>\r\n" + STYLE + "<script>var tracking = 'enabled';</script></head>\r\n"
    "<body><div>Добрый&nbsp;день!</div>\r\n"
    "<p>&#1055;&#1088;&#1086;&#1089;&#1080;&#1084; &#1087;&#1088;&#1086;&#1076;&#1083;&#1080;&#1090;&#1100;\r\n"
    "&laquo;&#1083;&#1080;&#1094;&#1077;&#1085;&#1079;&#1080;&#1102;&raquo; на 10 мест</p>\r\n"
    "<p>С уважением,<br>Иван Петров</p></body></html>"
)
HTML_TEXT = "Добрый день!\n\nПросим продлить «лицензию» на 10 мест\n\nС уважением,\nИван Петров"


async def test_an_html_only_letter_is_read_as_its_reader_sees_it(mailed: Running) -> None:
    """The tags were cut out and nothing else: the style sheet and script stayed in the text
    (so the letter looked English and the customer was answered in English), entities stayed
    as written (so "&#1083;&#1080;..." never matched the keyword "лиценз")."""
    raw = (
        head(
            "<html-1@client.test>",
            b"From: ivan@client.test",
            "Subject: Вопрос".encode(),
            b"MIME-Version: 1.0",
            b"Content-Type: text/html; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
        )
        + b"\r\n"
        + HTML_LETTER.encode()
    )

    contact = await deliver(mailed, raw)

    assert contact.payload["text"] == HTML_TEXT
    assert contact.criteria["purpose"] == "renewal"
    assert contact.language == "ru"


async def test_an_empty_plain_part_beside_the_html_one_does_not_hide_the_letter(mailed: Running) -> None:
    raw = (
        head(
            "<alt-1@client.test>",
            b"From: ivan@client.test",
            "Subject: Вопрос".encode(),
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/alternative; boundary="b1"',
        )
        + b"\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        + b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + HTML_LETTER.encode()
        + b"\r\n--b1--\r\n"
    )

    contact = await deliver(mailed, raw)

    assert contact.payload["text"] == HTML_TEXT
    assert contact.criteria["purpose"] == "renewal"


async def test_a_letter_forwarded_as_an_attachment_is_read_with_its_words(mailed: Running) -> None:
    """A colleague forwards a customer's letter to sales@ ("Forward as attachment"): the
    letter itself was skipped, so the manager saw an empty text and no keyword counted."""
    raw = (
        head(
            "<fwd-1@client.test>",
            "From: Мария <maria@romashka.test>".encode(),
            "Subject: Fwd: Вопрос".encode(),
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="b1"',
        )
        + b"\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        + b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
        + b"From: ivan@client.test\r\nSubject: =?utf-8?b?"
        + base64.b64encode("Продление".encode())
        + b"?=\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n"
        + "Срочно нужно продлить лицензию".encode("koi8-r")
        + b"\r\n--b1--\r\n"
    )

    contact = await deliver(mailed, raw)

    assert "From: ivan@client.test\nSubject: Продление\n\nСрочно нужно продлить лицензию" in contact.payload["text"]
    assert contact.criteria["purpose"] == "renewal" and contact.criteria["temperature"] == "hot"


# ---- out-of-office replies and bounces --------------------------------------------------

DSN = (
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"\r\n\r\n'
    b"--r1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + "Сообщение не доставлено: адрес не существует.".encode()
    + b"\r\n--r1\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.client.test\r\n\r\nFinal-Recipient: rfc822; ivan@client.test\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\n--r1--\r\n"
)
PLAIN = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Я в отпуске до 20 января.".encode()


@pytest.mark.parametrize(
    ("headers", "body", "answered"),
    [
        (["Subject: Вопрос по счёту"], PLAIN, True),  # an ordinary letter is acknowledged
        (["Subject: Вопрос по счёту", "X-Autoreply: yes"], PLAIN, False),  # Yandex, vacation programs
        (["Subject: Автоответ: Вопрос по счёту"], PLAIN, False),  # Yandex, mail.ru
        (["Subject: Автоматический ответ: Вопрос по счёту"], PLAIN, False),  # Outlook, Russian
        (["Subject: Automatic reply: Вопрос по счёту"], PLAIN, False),  # Outlook, English
        (["Subject: Out of Office: Вопрос по счёту"], PLAIN, False),
        (["Subject: Undelivered Mail Returned to Sender"], DSN, False),  # a bounce not from MAILER-DAEMON
    ],
    ids=["ordinary", "x-autoreply", "avtootvet", "outlook-ru", "outlook-en", "out-of-office", "dsn"],
)
async def test_an_automatic_reply_that_does_not_say_auto_submitted_is_not_answered(
    mailed: Running, headers: list[str], body: bytes, answered: bool
) -> None:
    """Only Auto-Submitted, Precedence and a MAILER-DAEMON sender counted: a customer's
    out-of-office reply was acknowledged ("Мы получили ваше обращение"), which their
    autoresponder answers again, on a new contact each time. Now it is not answered; in no
    thread (as here) a bounce is kept in the quarantine, anything else is still a contact
    (a form mailer may look automatic: a lead must not be lost)."""
    raw = head("<auto-1@client.test>", b"From: Ivan <ivan@client.test>", b"MIME-Version: 1.0")
    raw += "".join(h + "\r\n" for h in headers).encode() + body

    if answered:
        contact = await deliver(mailed, raw)
        notes = await messaging(mailed).notifier.store.list_notifications(contact.id)
        assert [n.template for n in notes if n.recipient == "ivan@client.test"] == ["received"]
        return
    port = messaging(mailed).smtp.port  # type: ignore[union-attr]
    assert await asyncio.to_thread(smtp_send, port, raw) == {}  # taken (250), not bounced
    await mailed.settle()
    await messaging(mailed).settle()
    notes = await messaging(mailed).notifier.store.list_notifications()
    assert [n for n in notes if n.recipient == "ivan@client.test"] == []  # the customer is not answered
    _, body_ = await mailed.call("GET", "/api/contacts?limit=1000", mailed.supervisor)
    contacts = [c for c in body_["contacts"] if c["channel"] == "email"]
    _, kept = await mailed.call("GET", "/api/email/quarantine", mailed.admin)
    quarantined = [q["message_id"] for q in kept["quarantine"]]
    if body is DSN:
        assert contacts == [] and quarantined == ["<auto-1@client.test>"]
    else:
        assert len(contacts) == 1 and quarantined == []


async def test_a_customer_writing_about_an_answering_machine_is_answered(mailed: Running) -> None:
    raw = enquiry("<auto-2@client.test>", subject="Автоответчик для офиса: цена?")

    contact = await deliver(mailed, raw)

    notes = await messaging(mailed).notifier.store.list_notifications(contact.id)
    assert [n.template for n in notes if n.recipient == "ivan@client.test"] == ["received"]
