"""A reply whose mail program dropped In-Reply-To and References (older Outlook setups, some
mobile apps, a customer writing a new letter under our subject) still finds its thread: by
the sender's address and the subject without "Re:"/"Fwd:", within `email.subject_window`.
A generic subject, another sender, an old thread, automatic mail and a form mailer never
match. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage

import pytest
from api_fixtures import Running
from mail_fixtures import Sink, enquiry, messaging

from acd.config.messaging import SUBJECT_WINDOW, EmailSpec, build_email
from acd.core import events as ev
from acd.core.model import ContactStatus
from acd.messaging.intake import Received
from acd.messaging.mail import read_mail, subject_key
from acd.storage import Store
from acd.storage.messaging import MessagingStore

DAY = 86400.0
SUBJECT = "Продление лицензии 1С на 10 мест"


async def take_in(r: Running, raw: bytes) -> Received:
    got = await messaging(r).intake.receive(raw, "imap")
    assert isinstance(got, Received), got
    await r.settle()
    return got


async def first_letter(r: Running, subject: str = SUBJECT, sender: str = "ivan@client.test") -> tuple[str, str]:
    """A first-time enquiry, accepted by the seller it was offered to: (contact, owner)."""
    got = await take_in(r, enquiry("<first@client.test>", sender=sender, subject=subject, text="Нужно продлить"))
    assert got.kind == "new" and got.contact_id is not None
    owner = r.server.dispatcher.board.contacts[got.contact_id].offered_to
    assert owner is not None
    await r.server.dispatcher.submit(ev.OfferAccepted(got.contact_id, owner))
    return got.contact_id, owner


# ---- the key --------------------------------------------------------------------------------


def test_the_subject_key_is_the_bare_subject_case_folded_and_generic_subjects_have_none() -> None:
    key = subject_key(SUBJECT)
    assert key == "продлениелицензии1сна10мест"
    same = ["RE: Продление лицензии 1С на 10 мест", "Отв: Fwd:  продление  ЛИЦЕНЗИИ 1с на 10 мест", "Re[2]: " + SUBJECT]
    # a long subject folded into encoded words loses the space at a word's edge (Python's own
    # generator writes "RE: " + SUBJECT so; a mail program reads it back "1Сна 10 мест")
    same.append("RE: Продление лицензии 1Сна 10 мест")
    assert [subject_key(s) for s in same] == [key] * len(same)
    assert subject_key("Re: Продление лицензии 1С на 20 мест") != key
    generic = ["", "Re:", "Re: 1С", "Вопрос", "RE: вопрос?", "Question", "Заявка", "request", "Без темы"]
    generic += ["(без темы)", "(no subject)", "Fwd: Счёт", "Re: Здравствуйте!", "Заявка с сайта"]
    assert [g for g in generic if subject_key(g) is not None] == []


def test_a_very_long_subject_has_a_bounded_key_still_its_own() -> None:
    long = "Продление лицензии " * 300
    key = subject_key("Re: " + long)
    assert key is not None and len(key) <= 200
    assert key == subject_key(long) != subject_key(long + "!")


def test_the_window_is_a_setting_of_the_email_section() -> None:
    assert build_email(EmailSpec(), {}).subject_window == SUBJECT_WINDOW == 30 * DAY
    assert build_email(EmailSpec(subject_window="240h"), {}).subject_window == 10 * DAY  # type: ignore[arg-type]
    assert build_email(EmailSpec(subject_window=0), {}).subject_window == 0


# ---- threads found by the subject -------------------------------------------------------------


async def test_a_reply_without_thread_headers_joins_the_sellers_open_contact(mailed: Running) -> None:
    cid, owner = await first_letter(mailed)

    # the reply comes from the same address, written in capitals by another mail program
    got = await take_in(mailed, enquiry("<r1@client.test>", sender="Ivan@Client.TEST", subject="RE: " + SUBJECT))

    assert got == Received(cid, False, "appended", owner)
    thread = await MessagingStore(mailed.server.store).messages(cid)
    assert [(m["message_id"], m["first_time"]) for m in thread if m["direction"] == "in"] == [
        ("<first@client.test>", True),
        ("<r1@client.test>", False),
    ]
    # a new letter of the customer's under the same subject (no "Re:") is a reply as well
    got = await take_in(mailed, enquiry("<r2@client.test>", subject=SUBJECT, text="И ещё вопрос"))
    assert got == Received(cid, False, "appended", owner)
    assert len([c for c in mailed.server.dispatcher.board.contacts.values() if c.email == "ivan@client.test"]) == 1


async def test_a_reply_to_our_acknowledgement_without_thread_headers_finds_its_thread(
    mailed: Running, sink: Sink
) -> None:
    cid, owner = await first_letter(mailed)
    await messaging(mailed).settle()
    ack = await asyncio.wait_for(sink.next(), 10)  # "Мы получили ваше обращение: ..."
    assert ack["To"] == "ivan@client.test"
    # the round that sent it records it once the send is done: a reply cannot come sooner
    await messaging(mailed).notifier.send_due()

    got = await take_in(mailed, enquiry("<r3@client.test>", subject="Re: " + str(ack["Subject"])))

    assert got == Received(cid, False, "appended", owner)


async def test_a_reply_without_thread_headers_to_a_closed_contact_goes_to_its_seller_first_and_is_not_counted(
    mailed: Running,
) -> None:
    board = mailed.server.dispatcher.board
    cid, owner = await first_letter(mailed)
    await mailed.server.dispatcher.submit(ev.WorkFinished(cid, owner))

    got = await take_in(mailed, enquiry("<r3@client.test>", subject="Отв: Продление лицензии 1С на 10 мест"))

    assert got.kind == "reply" and got.created and got.owner == owner and got.contact_id != cid
    assert got.contact_id is not None
    reply = board.contacts[got.contact_id]
    assert reply.preferred[0] == owner
    assert reply.status is ContactStatus.OFFERED and reply.offered_to == owner
    assert reply.payload["thread_of"] == cid
    await mailed.server.dispatcher.submit(ev.OfferAccepted(reply.id, owner))
    # fairness counts first-time enquiries only: the seller took one, not two
    assert await MessagingStore(mailed.server.store).fairness(None) == {owner: 1}


async def test_another_sender_a_generic_subject_or_an_old_thread_never_matches(mailed: Running) -> None:
    cid, _ = await first_letter(mailed)
    intake = messaging(mailed).intake

    other = await take_in(mailed, enquiry("<o1@client.test>", sender="maria@client.test", subject="Re: " + SUBJECT))
    assert other.kind == "new" and other.contact_id != cid

    # a generic subject tells nothing, even from the same sender with a thread under it
    await take_in(mailed, enquiry("<g1@client.test>", subject="Вопрос"))
    generic = await take_in(mailed, enquiry("<g2@client.test>", subject="Re: Вопрос"))
    assert generic.kind == "new"

    # past the window since the thread's last message, the same subject is a new enquiry
    now = time.time()
    intake.clock = lambda: now + 31 * DAY
    late = await take_in(mailed, enquiry("<late@client.test>", subject="Re: " + SUBJECT))
    assert late.kind == "new" and late.contact_id != cid


async def test_within_the_window_since_the_threads_last_message_it_still_matches(mailed: Running) -> None:
    cid, owner = await first_letter(mailed)
    intake = messaging(mailed).intake
    now = time.time()
    intake.clock = lambda: now + 20 * DAY
    got = await take_in(mailed, enquiry("<r20@client.test>", subject="Re: " + SUBJECT))
    assert got == Received(cid, False, "appended", owner)
    # 40 days after the first letter, 20 after the thread's last one
    intake.clock = lambda: now + 40 * DAY
    got = await take_in(mailed, enquiry("<r40@client.test>", subject="Re: " + SUBJECT))
    assert got == Received(cid, False, "appended", owner)


async def test_a_window_of_zero_turns_it_off(mailed: Running) -> None:
    from dataclasses import replace

    await first_letter(mailed)
    d = messaging(mailed).intake.deployment()
    messaging(mailed).intake.deployment = lambda: replace(d, email=replace(d.email, subject_window=0.0))
    got = await take_in(mailed, enquiry("<off@client.test>", subject="Re: " + SUBJECT))
    assert got.kind == "new"


def form_lead(message_id: str, sender: str, customer: str, automatic: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Сайт Ромашки <{sender}>"
    msg["To"] = "sales@romashka.test"
    if customer:
        msg["Reply-To"] = customer
    if automatic:
        msg["Precedence"] = "bulk"
    msg["Subject"] = "Обратная связь с сайта romashka.test"
    msg["Message-ID"] = message_id
    msg.set_content(f"Клиент {customer} просит перезвонить")
    return msg.as_bytes()


@pytest.mark.parametrize(
    ("sender", "customer", "automatic"),
    [
        ("forms@romashka.test", "a@client.test", False),  # Reply-To the customer
        ("noreply@romashka.test", "", False),
        ("site@romashka.test", "", True),  # Precedence: bulk
    ],
)
async def test_a_form_mailers_leads_under_one_subject_stay_separate(
    mailed: Running, sender: str, customer: str, automatic: bool
) -> None:
    first = await take_in(mailed, form_lead("<lead1@romashka.test>", sender, customer, automatic))
    second = await take_in(mailed, form_lead("<lead2@romashka.test>", sender, customer.replace("a@", "b@"), automatic))
    assert first.created and second.created and first.contact_id != second.contact_id


async def test_a_header_reply_still_wins_over_the_subject(mailed: Running) -> None:
    cid, owner = await first_letter(mailed)
    other = await take_in(mailed, enquiry("<x1@client.test>", subject="Счета за декабрь"))
    assert other.kind == "new"
    got = await take_in(
        mailed, enquiry("<x2@client.test>", subject="Re: Счета за декабрь", in_reply_to="<first@client.test>")
    )
    assert got == Received(cid, False, "appended", owner)


def test_a_reply_to_another_address_is_read_from_the_letter() -> None:
    mail = read_mail(form_lead("<f@romashka.test>", "forms@romashka.test", "Anna <A@Client.test>"), 100_000)
    assert not isinstance(mail, str) and getattr(mail, "reply_to", None) == "a@client.test"
    own = read_mail(enquiry("<o@client.test>").replace(b"To:", b"Reply-To: ivan@client.test\nTo:", 1), 100_000)
    assert getattr(own, "reply_to", None) == ""


# ---- the store ---------------------------------------------------------------------------------


async def test_the_store_finds_the_newest_live_thread_by_address_and_key(store: Store) -> None:
    m = MessagingStore(store)
    key = subject_key(SUBJECT)
    assert key is not None
    await m.record_message("<a1@x>", "c-old", "in", True, "ivan@client.test", SUBJECT, 100.0)
    await m.record_message("<a2@x>", "c-new", "in", True, "ivan@client.test", "Re: " + SUBJECT, 200.0)
    await m.record_message("<a3@x>", "c-other", "in", True, "maria@client.test", SUBJECT, 300.0)
    assert await m.thread_by_subject("IVAN@client.test", key, 50.0) == "c-new"
    assert await m.thread_by_subject("ivan@client.test", key, 250.0) is None
    # the thread's last message counts, whatever its subject
    await m.record_message("<a4@x>", "c-old", "in", False, "ivan@client.test", "Вопрос", 400.0)
    await m.record_message("<a5@x>", "c-new", "out", False, "", "Ваш менеджер: Анна", 240.0)
    assert await m.thread_by_subject("ivan@client.test", key, 250.0) == "c-old"
    assert await m.thread_by_subject("ivan@client.test", key, 401.0) is None

    # what we send: the recipient only when the sender names it (a seller's notice has a
    # contact but is not the customer's letter), and a generic subject is kept without a key
    await m.record_message("<o1@x>", "c-out", "out", False, "", "Мы получили ваше обращение: Счета", 500.0)
    await m.record_message(
        "<o2@x>", "c-out", "out", False, "", "Мы получили ваше обращение: Акт сверки", 500.0, address="Petr@Client.test"
    )
    await m.record_message("<g@x>", "c-g", "in", True, "petr@client.test", "Re: Вопрос", 500.0)
    rows = {r["message_id"]: (r["address"], r["subject_key"]) for c in ("c-out", "c-g") for r in await m.messages(c)}
    assert rows == {
        "<o1@x>": (None, None),
        "<o2@x>": ("petr@client.test", "мыполучиливашеобращение:актсверки"),
        "<g@x>": ("petr@client.test", None),
    }
    assert await m.thread_by_subject("petr@client.test", "мыполучиливашеобращение:актсверки", 0.0) == "c-out"


async def test_a_subject_of_kilobytes_is_stored_and_threads_on_both_databases(store: Store) -> None:
    m = MessagingStore(store)
    long = "Продление лицензии на рабочие места в филиалах " * 100  # 9 KB in UTF-8
    assert await m.record_message("<l1@x>", "c-l", "in", True, "ivan@client.test", long, 1.0)
    key = subject_key("Re: " + long)
    assert key is not None
    assert await m.thread_by_subject("ivan@client.test", key, 0.0) == "c-l"
