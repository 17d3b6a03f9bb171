"""E-mail intake over a real SMTP exchange on 127.0.0.1: smtplib delivers to our aiosmtpd
listener, and what we send goes to an aiosmtpd sink. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import secrets
import smtplib
from collections.abc import Sequence

import pytest
from api_fixtures import Running, start, stop
from mail_fixtures import Sink, enquiry, mail_deployment, messaging, smtp_send
from storage_fixtures import Backend

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus
from acd.messaging.intake import EmailIntake
from acd.messaging.mail import Refused
from acd.storage import Refused as StoreRefused


async def deliver(r: Running, raw: bytes) -> dict[str, tuple[int, bytes]]:
    port = messaging(r).smtp.port  # type: ignore[union-attr]
    return await asyncio.to_thread(smtp_send, port, raw)


async def email_contacts(r: Running) -> list[str]:
    _, body = await r.call("GET", "/api/contacts?limit=1000", r.supervisor)
    return [c["id"] for c in body["contacts"] if c["channel"] == "email"]


async def test_a_new_enquiry_becomes_an_email_contact_with_criteria_from_keywords_and_the_customer_is_told(
    mailed: Running, sink: Sink
) -> None:
    raw = enquiry("<first@client.test>", subject="Продление", text="Срочно нужно продлить лицензию на 10 мест")

    assert await deliver(mailed, raw) == {}

    await mailed.settle()
    [cid] = await email_contacts(mailed)
    contact = await mailed.server.store.get_contact(cid)
    assert contact is not None
    assert contact.channel is Channel.EMAIL
    assert contact.email == "ivan@client.test"
    assert contact.customer_name == "Иван Петров"
    assert contact.criteria["purpose"] == "renewal"  # "лиценз", "продл"
    assert contact.criteria["temperature"] == "hot"  # "срочно"
    assert contact.criteria["price_tier"] == "mid"  # nothing said: the criterion's default
    assert "renewals" in contact.required_skills
    assert contact.payload["subject"] == "Продление"
    assert contact.language == "ru"

    ack = await sink.next()
    assert ack["To"] == "ivan@client.test"
    assert ack["In-Reply-To"] == "<first@client.test>"
    assert ack["Auto-Submitted"] == "auto-generated"
    assert "Мы получили ваше обращение" in ack["Subject"]


async def test_the_same_message_delivered_twice_makes_one_contact_and_one_acknowledgement(
    mailed: Running, sink: Sink
) -> None:
    raw = enquiry("<twice@client.test>", text="Хочу купить")

    await deliver(mailed, raw)
    await deliver(mailed, raw)

    await mailed.settle()
    [cid] = await email_contacts(mailed)
    await sink.next()
    await sink.next()
    await messaging(mailed).settle()
    await messaging(mailed).notifier.send_due()  # waits for the round in flight
    assert sink.received.empty()
    _, body = await mailed.call("GET", f"/api/notifications?contact_id={cid}", mailed.supervisor)
    sent = sorted((n["template"], n["recipient"], n["status"]) for n in body["notifications"])
    seller = mailed.server.dispatcher.board.contacts[cid].offered_to
    seller_email = mailed.server.dispatcher.board.managers[seller].email  # type: ignore[index]
    assert sent == [("offered", seller_email, "sent"), ("received", "ivan@client.test", "sent")]


async def test_a_reply_goes_to_whoever_has_the_thread_not_back_to_the_queue(mailed: Running, sink: Sink) -> None:
    board = mailed.server.dispatcher.board
    await deliver(mailed, enquiry("<q1@client.test>", subject="Покупка", text="Хотим купить"))
    await mailed.settle()
    [cid] = await email_contacts(mailed)
    owner = board.contacts[cid].offered_to
    assert owner is not None
    await mailed.server.dispatcher.submit(ev.OfferAccepted(cid, owner))
    mails = [await sink.next() for _ in range(3)]
    by_subject = {m["Subject"].split(":")[0]: m for m in mails}
    received = by_subject["Мы получили ваше обращение"]  # to the customer
    assigned = by_subject["Ваш менеджер"]  # to the customer, once they have a manager
    offered = by_subject["Новое обращение"]  # to the seller, with the offer
    assert received["To"] == assigned["To"] == "ivan@client.test"
    assert board.managers[owner].name in assigned.get_content()
    assert offered["To"] == board.managers[owner].email

    # a reply while the contact is open joins its thread, and the owner hears of it
    await deliver(mailed, enquiry("<q2@client.test>", subject="Re: Покупка", in_reply_to=received["Message-ID"]))
    await mailed.settle()
    assert await email_contacts(mailed) == [cid]
    told = await sink.next()
    assert told["To"] == board.managers[owner].email
    assert told["Subject"].startswith("Новое письмо в переписке")
    _, thread = await mailed.call("GET", f"/api/contacts/{cid}/emails", mailed.supervisor)
    assert "<q2@client.test>" in [m["message_id"] for m in thread["messages"]]

    # once closed, a reply opens a new contact that goes to the same seller first
    await mailed.server.dispatcher.submit(ev.WorkFinished(cid, owner))
    await deliver(mailed, enquiry("<q3@client.test>", subject="Re: Покупка", in_reply_to="<q1@client.test>"))
    await mailed.settle()
    new = [c for c in await email_contacts(mailed) if c != cid]
    assert len(new) == 1
    reply = board.contacts[new[0]]
    assert reply.preferred[0] == owner
    assert reply.status is ContactStatus.OFFERED and reply.offered_to == owner


async def test_malformed_mail_is_refused_and_quarantined_with_a_clear_log_line_and_the_listener_goes_on(
    mailed: Running, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="acd.email")
    no_from = b"To: sales@romashka.test\r\nSubject: hello\r\nMessage-ID: <nofrom@x>\r\n\r\nhi\r\n"
    broken = (
        b"From: a@client.test\r\nSubject: broken\r\nMessage-ID: <broken@x>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\nthe boundary never comes\r\n'
    )
    huge = enquiry("<huge@client.test>", text="see attachment\n" + "A" * 300_000)  # max_size is 200 kB

    with pytest.raises(smtplib.SMTPDataError) as no_from_err:
        await deliver(mailed, no_from)
    with pytest.raises(smtplib.SMTPDataError) as broken_err:
        await deliver(mailed, broken)
    with pytest.raises(smtplib.SMTPSenderRefused) as huge_err:  # smtplib declares SIZE, so MAIL FROM is refused
        await deliver(mailed, huge)

    assert no_from_err.value.smtp_code == 550
    assert broken_err.value.smtp_code == 550
    assert huge_err.value.smtp_code == 552
    assert "no From header" in caplog.text
    assert "broken MIME structure" in caplog.text
    assert "too large" in caplog.text
    _, body = await mailed.call("GET", "/api/email/quarantine", mailed.admin)
    reasons = [q["reason"] for q in body["quarantine"]]
    assert any("no From" in r for r in reasons) and any("broken MIME" in r for r in reasons)
    # still listening
    assert await deliver(mailed, enquiry("<after@client.test>")) == {}
    await mailed.settle()
    assert len(await email_contacts(mailed)) == 1


async def test_supervisors_see_the_fairness_counts_of_first_time_enquiries(mailed: Running, sink: Sink) -> None:
    board = mailed.server.dispatcher.board
    for i in range(6):
        await deliver(mailed, enquiry(f"<fair{i}@client.test>", sender=f"c{i}@client.test", text="Хотим купить"))
        await mailed.settle()
    for c in list(board.contacts.values()):
        if c.status is ContactStatus.OFFERED and c.offered_to:
            await mailed.server.dispatcher.submit(ev.OfferAccepted(c.id, c.offered_to))

    status, body = await mailed.call("GET", "/api/email/fairness", mailed.supervisor)

    assert status == 200
    assert body["total"] == 6
    counts = {m["manager_id"]: m["count"] for m in body["managers"]}
    assert set(board.managers) <= set(counts)  # every seller who takes e-mail, zeros included
    assert sum(counts.values()) == 6
    assert (await mailed.call("GET", "/api/email/fairness", None))[0] == 401


async def test_a_message_id_longer_than_a_key_can_be_still_dedupes_and_threads(mailed: Running) -> None:
    """A Message-ID of kilobytes (as a mailbox may hand over, though no line should pass 998
    characters) stands for itself by its hash: on PostgreSQL the index could not hold it,
    and the message would be retried and refused for ever."""
    long_id = "<" + secrets.token_urlsafe(3000) + "@client.test>"
    raw = (
        "From: Иван Петров <ivan@client.test>\r\nTo: sales@romashka.test\r\nSubject: Вопрос\r\n"
        f"Message-ID: {long_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nХочу купить\r\n"
    ).encode()
    intake = messaging(mailed).intake
    first = await intake.receive(raw, "imap")
    again = await intake.receive(raw, "imap")
    reply = enquiry("<short-reply@client.test>", subject="Re: Вопрос", in_reply_to=long_id)
    answered = await intake.receive(reply, "imap")
    await mailed.settle()
    assert len(await email_contacts(mailed)) == 1
    assert not isinstance(first, Refused) and not isinstance(again, Refused) and not isinstance(answered, Refused)
    assert first.contact_id == again.contact_id == answered.contact_id


async def test_a_message_carrying_nul_characters_goes_in_with_them_replaced(mailed: Running) -> None:
    """A mislabelled UTF-16 body or an encoded word can decode to NUL, which PostgreSQL's
    text cannot hold: the enquiry still goes in, each NUL shown as U+FFFD."""
    raw = (
        b"From: =?utf-8?b?0JjQstCw0L0A?= <ivan@client.test>\r\nTo: sales@romashka.test\r\n"
        b"Subject: =?utf-8?b?0JLQvtC/0YDQvtGBAA==?=\r\nMessage-ID: <nul-1@client.test>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"0KXQvtGH0YMA0LrRg9C/0LjRgtGM\r\n"
    )
    got = await messaging(mailed).intake.receive(raw, "imap")
    await mailed.settle()
    assert not isinstance(got, Refused), got
    contact = await mailed.server.store.get_contact(got.contact_id)
    assert contact is not None and contact.customer_name == "Иван\ufffd"
    assert contact.payload["subject"] == "Вопрос\ufffd" and contact.payload["text"] == "Хочу\ufffdкупить"


async def test_a_reply_with_tens_of_thousands_of_references_still_joins_its_thread(
    backend: Backend, sink: Sink
) -> None:
    """References are threaded by the newest hundred: a look-up by all of them passed
    PostgreSQL's 32,767 parameters, and the message was retried and refused for ever."""
    mailed = await start(backend, mail_deployment(sink.port, max_size=10 * 1024 * 1024))  # the default
    try:
        await _a_reply_with_40_000_references(messaging(mailed).intake)
    finally:
        await stop(mailed)


async def _a_reply_with_40_000_references(intake: EmailIntake) -> None:
    first = await intake.receive(enquiry("<t1@client.test>", subject="Покупка"), "imap")
    assert not isinstance(first, Refused)
    junk = " ".join(f"<j{i}@x.test>" for i in range(40_000))
    raw = enquiry("<t2@client.test>", subject="Re: Покупка", in_reply_to="<t1@client.test>")
    raw = raw.replace(b"References: <t1@client.test>", f"References: {junk} <t1@client.test>".encode())
    assert len(raw) < 1_000_000
    reply = await intake.receive(raw, "imap")
    assert not isinstance(reply, Refused) and reply.contact_id == first.contact_id


async def test_a_message_the_database_refuses_is_quarantined_not_retried_for_ever(mailed: Running) -> None:
    """A value the database will never take (simulated here: the two found so far, NUL and
    tens of thousands of references, are mended where they enter) gets a 550 and goes to the
    quarantine: a 451 would have the sender's server retry it for days, and an IMAP scan
    would leave it unseen for good."""
    intake = messaging(mailed).intake
    real = intake.messages.thread_contact

    async def refusing(message_ids: Sequence[str]) -> str | None:
        if "<refused@client.test>" in message_ids:
            raise StoreRefused('invalid byte sequence for encoding "UTF8": 0x00')
        return await real(message_ids)

    intake.messages.thread_contact = refusing  # type: ignore[method-assign]
    with pytest.raises(smtplib.SMTPDataError) as err:
        await deliver(mailed, enquiry("<refused@client.test>"))
    assert err.value.smtp_code == 550
    _, body = await mailed.call("GET", "/api/email/quarantine", mailed.admin)
    assert [q["message_id"] for q in body["quarantine"]] == ["<refused@client.test>"]
    assert "database cannot store" in body["quarantine"][0]["reason"]
    assert await deliver(mailed, enquiry("<after-refused@client.test>")) == {}
