"""What relays and mail programs really deliver, over SMTP on 127.0.0.1 to our listener (and
straight to the intake for the IMAP route): unwrapped long lines, a letter that is only an
attachment, out-of-office replies and bounces of our own acknowledgement, one letter without
a Message-ID by two routes, and subjects with stacked "Re: Fwd:". Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from email.message import EmailMessage

import pytest
from api_fixtures import Running
from mail_fixtures import Sink, enquiry, messaging, smtp_send

from acd.core import events as ev
from acd.core.model import ContactStatus
from acd.messaging.mail import Refused
from acd.storage.messaging import MessagingStore


async def deliver(r: Running, raw: bytes) -> None:
    """Deliver over SMTP as a relay would; the relay must get a 250."""
    port = messaging(r).smtp.port  # type: ignore[union-attr]
    assert await asyncio.to_thread(smtp_send, port, raw) == {}
    await r.settle()


async def email_contacts(r: Running) -> list[str]:
    _, body = await r.call("GET", "/api/contacts?limit=1000", r.supervisor)
    return [c["id"] for c in body["contacts"] if c["channel"] == "email"]


async def customer_notes(r: Running, recipient: str = "ivan@client.test") -> list[str]:
    await messaging(r).settle()
    _, body = await r.call("GET", "/api/notifications?limit=1000", r.supervisor)
    return [n["template"] for n in body["notifications"] if n["recipient"] == recipient]


async def quarantine(r: Running) -> list[dict[str, object]]:
    _, body = await r.call("GET", "/api/email/quarantine", r.admin)
    return list(body["quarantine"])


# ---- 1. lines longer than 1,000 octets --------------------------------------------------


async def test_a_letter_whose_lines_are_not_wrapped_is_taken_not_bounced(mailed: Running) -> None:
    """An HTML generator's letter in one line of kilobytes: aiosmtpd's default limit (1,001
    octets) answered a permanent 500 "Line too long", and the customer got a bounce."""
    cells = "".join(f"<td>Позиция {i}: продление лицензии 1С, 10 мест</td>" for i in range(200))
    markup = f"<html><body><p>Добрый день!</p><table><tr>{cells}</tr></table></body></html>"
    raw = (
        "From: Иван Петров <ivan@client.test>\r\nTo: sales@romashka.test\r\nSubject: Счёт\r\n"
        "Message-ID: <long-line@client.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{markup}\r\n"
    ).encode()
    assert max(len(line) for line in raw.split(b"\r\n")) > 10_000

    await deliver(mailed, raw)

    [cid] = await email_contacts(mailed)
    contact = await mailed.server.store.get_contact(cid)
    assert contact is not None
    assert "Позиция 119: продление лицензии 1С, 10 мест" in contact.payload["text"]
    assert contact.criteria["purpose"] == "renewal"


async def test_a_line_longer_than_the_largest_message_is_refused_as_too_large(mailed: Running) -> None:
    """Past `email.max_size` (200 kB here) one line is a message too large: 552, as for any."""
    port = messaging(mailed).smtp.port  # type: ignore[union-attr]
    raw = enquiry("<huge-line@client.test>").replace(b"\n\n", b"\n\n" + b"A" * 250_000, 1)

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("ivan@client.test")  # no SIZE declared: the data itself is over
            smtp.rcpt("sales@romashka.test")
            return smtp.data(raw)

    code, _ = await asyncio.to_thread(send)
    assert code == 552
    assert await email_contacts(mailed) == []


# ---- 2. a letter that is only an attachment ---------------------------------------------

NAME = "Заявка на продление лицензии.pdf"


def attachment_only(disposition: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Иван Петров <ivan@client.test>"
    msg["To"] = "sales@romashka.test"
    msg["Message-ID"] = "<attached-1@client.test>"
    msg.add_attachment(b"%PDF-1.4\n%fake\n", maintype="application", subtype="pdf", filename=NAME)
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if disposition is None:
        return raw
    head, _, rest = raw.partition(b"Content-Disposition: attachment;")
    _, _, body = rest.partition(b"\r\n\r\n")
    return head + b"Content-Disposition: " + disposition + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "disposition",
    [
        None,  # RFC 2231, as Thunderbird and the standard library write it
        b'attachment; filename="=?utf-8?B?' + base64.b64encode(NAME.encode()) + b'?="',  # Outlook, 1C
        b'attachment; filename="' + NAME.encode("cp1251") + b'"',  # an old 1C mailer: raw 8-bit
        b'attachment; filename="' + NAME.replace(" ", "_").encode() + b'"',
    ],
    ids=["rfc2231", "encoded-word", "raw-cp1251", "underscores"],
)
async def test_a_letter_that_is_only_an_attachment_is_an_enquiry(mailed: Running, disposition: bytes | None) -> None:
    """No subject, no text, only «Заявка на продление лицензии.pdf»: it was refused with a
    550 "no subject and no readable text", and the customer's request bounced."""
    await deliver(mailed, attachment_only(disposition))

    [cid] = await email_contacts(mailed)
    contact = await mailed.server.store.get_contact(cid)
    assert contact is not None
    assert [a.replace("_", " ") for a in contact.payload["attachments"]] == [NAME]
    assert contact.criteria["purpose"] == "renewal"  # "продл", "лиценз" in the file's name
    assert contact.language == "ru"
    assert await customer_notes(mailed) == ["received"]


async def test_a_letter_with_nothing_at_all_is_still_refused(mailed: Running) -> None:
    raw = b"From: ivan@client.test\r\nTo: sales@romashka.test\r\nMessage-ID: <empty@client.test>\r\n\r\n\r\n"
    got = await messaging(mailed).intake.receive(raw, "imap")
    assert isinstance(got, Refused) and "no attachment" in got.reason


# ---- 3. out-of-office replies and bounces ------------------------------------------------


async def acknowledged(r: Running, sink: Sink) -> tuple[str, str]:
    """A customer's enquiry, and the Message-ID of our acknowledgement of it."""
    await deliver(r, enquiry("<asked@client.test>", subject="Продление", text="Нужно продлить лицензию"))
    [cid] = await email_contacts(r)
    [ack] = [m for m in [await sink.next(), await sink.next()] if m["To"] == "ivan@client.test"]  # and "offered"
    await messaging(r).notifier.send_due()  # waits for the round in flight, which records the ack
    return cid, str(ack["Message-ID"])


def out_of_office(ack_id: str) -> bytes:
    return (
        "From: Иван Петров <ivan@client.test>\r\nTo: sales@romashka.test\r\n"
        "Subject: Автоматический ответ: Мы получили ваше обращение: Продление\r\n"
        f"Message-ID: <ooo-1@client.test>\r\nIn-Reply-To: {ack_id}\r\nReferences: {ack_id}\r\n"
        "Auto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Я в отпуске до 20 января. Прошу продлить лицензию срочно.\r\n"
    ).encode()


def bounce(ack_id: str, returned: str) -> bytes:
    """A DSN (RFC 3464) from MAILER-DAEMON: no In-Reply-To; the returned letter inside."""
    original = (
        f"From: sales@romashka.test\r\nTo: ivan@client.test\r\nMessage-ID: {ack_id}\r\n"
        "Subject: =?utf-8?b?0JzRiyDQv9C+0LvRg9GH0LjQu9C4?=\r\n"
    ).encode()
    if returned == "message/rfc822":
        original += b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    return (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.client.test>\r\nTo: sales@romashka.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.client.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="r1"\r\n\r\n'
        b"--r1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Сообщение не доставлено: адрес не существует. Лицензия продление.".encode()
        + b"\r\n--r1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.client.test\r\n\r\nFinal-Recipient: rfc822; ivan@client.test\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--r1\r\nContent-Type: " + returned.encode() + b"\r\n\r\n" + original + b"\r\n--r1--\r\n"
    )


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
@pytest.mark.parametrize(
    ("make", "message_id"),
    [
        (out_of_office, "<ooo-1@client.test>"),
        (lambda ack: bounce(ack, "message/rfc822"), "<dsn-1@mx.client.test>"),
        (lambda ack: bounce(ack, "text/rfc822-headers"), "<dsn-1@mx.client.test>"),
    ],
    ids=["out-of-office", "dsn-whole-letter", "dsn-headers-only"],
)
async def test_an_automatic_reply_to_our_acknowledgement_goes_on_its_thread_and_is_nobodys_work(
    mailed: Running, sink: Sink, make: object, message_id: str, closed: bool
) -> None:
    """An out-of-office reply or a bounce of our acknowledgement became a new "lead" a
    manager was offered (a bounce found no thread: its only link is the Message-ID of the
    returned letter, inside it)."""
    board = mailed.server.dispatcher.board
    cid, ack_id = await acknowledged(mailed, sink)
    owner = board.contacts[cid].offered_to
    assert owner is not None
    await mailed.server.dispatcher.submit(ev.OfferAccepted(cid, owner))
    if closed:
        await mailed.server.dispatcher.submit(ev.WorkFinished(cid, owner))
    before = await customer_notes(mailed)
    assert callable(make)

    await deliver(mailed, make(ack_id))

    assert await email_contacts(mailed) == [cid]  # no new contact, nobody offered anything
    assert not [c for c in board.contacts.values() if c.status is ContactStatus.OFFERED]
    _, thread = await mailed.call("GET", f"/api/contacts/{cid}/emails", mailed.supervisor)
    assert message_id in [m["message_id"] for m in thread["messages"]]  # the manager sees it
    assert await customer_notes(mailed) == before  # never acknowledged
    assert await customer_notes(mailed, str(board.managers[owner].email)) == ["offered"]  # no "reply" either
    assert await quarantine(mailed) == []


async def test_a_bounce_in_no_thread_is_kept_for_staff_not_offered_nor_answered(mailed: Running) -> None:
    raw = bounce("<gone-long-ago@romashka.test>", "text/rfc822-headers")  # returns a letter we no longer know

    await deliver(mailed, raw)
    await deliver(mailed, raw)  # delivered twice: kept once

    assert await email_contacts(mailed) == []
    assert await customer_notes(mailed, "mailer-daemon@mx.client.test") == []
    [kept] = await quarantine(mailed)
    assert kept["message_id"] == "<dsn-1@mx.client.test>" and kept["sender"] == "mailer-daemon@mx.client.test"
    assert "automatic" in str(kept["reason"])


async def test_other_automatic_mail_in_no_thread_is_still_a_lead_but_unanswered(mailed: Running) -> None:
    """A website's form mailer may mark its letters `Precedence: bulk` or Auto-Submitted:
    outside any thread, such a letter is a lead (never lost to the quarantine), though it
    gets no acknowledgement."""
    raw = (
        "From: Иван Петров <ivan@client.test>\r\nTo: sales@romashka.test\r\n"
        "Subject: Заявка с сайта: продление лицензии\r\nMessage-ID: <form-1@site.test>\r\n"
        "Precedence: bulk\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nПродлить лицензию на 10 мест.\r\n"
    ).encode()

    await deliver(mailed, raw)

    assert len(await email_contacts(mailed)) == 1
    assert await customer_notes(mailed) == []
    assert await quarantine(mailed) == []


# ---- 4. one letter without a Message-ID, by two routes ------------------------------------

LETTER = (
    "From: Иван Петров <ivan@client.test>\r\nTo: sales@romashka.test\r\nSubject: Продление\r\n"
    "Date: Mon, 07 Dec 2026 10:00:00 +0300\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "Нужно продлить лицензию на 10 мест.\r\n"
).encode()
BY_RELAY_1 = (
    b"Received: from mx1.romashka.test (mx1 [10.0.0.1])\r\n\tby acd.romashka.test; Mon, 7 Dec 2026 10:00:02 +0300\r\n"
    b"Received: from client.test by mx1.romashka.test; Mon, 7 Dec 2026 10:00:01 +0300\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=client.test; s=mail; b=AAAA\r\n"
    b"X-Original-To: sales@romashka.test\r\n" + LETTER
)
BY_RELAY_2 = (
    b"Return-Path: <ivan@client.test>\r\nDelivered-To: sales@romashka.test\r\n"
    b"Received: from mx2.romashka.test by imap.romashka.test; Mon, 7 Dec 2026 10:00:07 +0300\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=romashka.test; s=arc; b=BBBB\r\n"
    b"ARC-Message-Signature: i=1; a=rsa-sha256; d=romashka.test; s=arc; b=CCCC\r\n"
    b"ARC-Authentication-Results: i=1; mx2.romashka.test; dkim=pass\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=client.test; s=mail;\r\n b=AAAA\r\n" + LETTER
)


async def test_one_letter_without_a_message_id_by_two_routes_is_one_contact(mailed: Running) -> None:
    """Its stand-in Message-ID was a hash of all its bytes, the relays' trace headers too:
    by SMTP from one relay and from the mailbox by IMAP, one enquiry became two contacts
    and was acknowledged twice."""
    await deliver(mailed, BY_RELAY_1)
    again = await messaging(mailed).intake.receive(BY_RELAY_2, "imap")
    await mailed.settle()

    [cid] = await email_contacts(mailed)
    assert not isinstance(again, Refused) and again.contact_id == cid and again.kind == "duplicate"
    assert await customer_notes(mailed) == ["received"]


async def test_two_letters_without_a_message_id_that_differ_are_two_messages(mailed: Running) -> None:
    await deliver(mailed, BY_RELAY_1)
    await deliver(mailed, BY_RELAY_2.replace("10 мест".encode(), "20 мест".encode()))

    # both are kept; from one sender under one subject they are one thread (by the subject)
    [cid] = await email_contacts(mailed)
    thread = await MessagingStore(mailed.server.store).messages(cid)
    assert len({m["message_id"] for m in thread if m["direction"] == "in"}) == 2
    # under another subject, another contact
    await deliver(mailed, BY_RELAY_2.replace("Subject: Продление".encode(), "Subject: Обучение".encode()))
    assert len(await email_contacts(mailed)) == 2


# ---- 5. "Re: Fwd:" in our subjects --------------------------------------------------------


async def test_our_subjects_quote_the_customers_without_its_reply_and_forward_prefixes(
    mailed: Running, sink: Sink
) -> None:
    """«Мы получили ваше обращение: RE: Fwd: Re: …» — each program in the chain adds its own."""
    subject = "RE: Fwd: Re[2]: Отв: Пересл: AW: Продление лицензии"

    await deliver(mailed, enquiry("<prefixed@client.test>", subject=subject))

    [cid] = await email_contacts(mailed)
    mails = {str(m["To"]): m for m in [await sink.next(), await sink.next()]}
    assert mails["ivan@client.test"]["Subject"] == "Мы получили ваше обращение: Продление лицензии"
    seller = mailed.server.dispatcher.board.managers[mailed.server.dispatcher.board.contacts[cid].offered_to or ""]
    offered = mails[str(seller.email)]
    assert offered["Subject"] == "Новое обращение: Продление лицензии"
    assert subject in offered.get_content()  # the body quotes it as the customer wrote it
    contact = await mailed.server.store.get_contact(cid)
    assert contact is not None and contact.payload["subject"] == subject  # kept as written
