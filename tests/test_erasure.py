"""A customer who withdrew consent (152-FZ, GDPR) is erased by an administrator: their name,
phones, e-mails, note, letters and numbers leave every table, API answer and export, in one
transaction; deals, outcomes, counts and ratings stay; then their caller numbers leave the
queue_log file and their voicemail recordings are deleted. Refused (409) while a contact of theirs
is live; idempotent; administrators only. A real server on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_fixtures import EXAMPLE, Running, start, stop
from mail_fixtures import Sink, enquiry, mail_deployment, messaging
from storage_fixtures import Backend

from acd.cli import main
from acd.core import events as ev
from acd.core.model import Channel, Contact, ContactStatus, Outcome
from acd.storage import open_store
from acd.storage import tables as t
from acd.storage.messaging import MessagingStore, Notification
from acd.storage.tables import metadata
from acd.storage.telephony import CallbackRow, TelephonyStore

NAME = "Ерасова Пелагея"
PHONE = "+79167770011"
EMAIL = "pelageya@erase-client.ru"
NOTE = "паспорт 4509 123456"
SECRETS = (NAME, PHONE, PHONE[1:], EMAIL, NOTE)
DIALLED = "89167770011"  # the number as the PBX's caller ID spelled it
VOICEMAIL = "1765150000.41"  # the Uniqueid of the call in which they left a voicemail
STRANGER = "1765150200.44"  # someone else's call


@pytest.fixture
async def erasing(backend: Backend, sink: Sink, tmp_path: Path) -> AsyncIterator[Running]:
    """`mailed`, writing queue_log and seeing Asterisk's sounds directory (in `tmp_path`/files)."""
    d = mail_deployment(sink.port)
    root = tmp_path / "files"
    files = replace(d.asterisk, queue_log=str(root / "queue_log"), sounds_dir=str(root / "sounds"))
    r = await start(backend, replace(d, asterisk=files))
    try:
        yield r
    finally:
        await stop(r)


async def accept(r: Running, cid: str) -> tuple[str, str]:
    await r.settle()
    owner = r.server.dispatcher.board.contacts[cid].offered_to
    assert owner is not None
    await r.server.dispatcher.submit(ev.OfferAccepted(cid, owner))
    return owner, await r.manager_token(owner)


async def lead(r: Running, note: str = "звоните после шести") -> str:
    status, body = await r.call("POST", "/api/leads", json={"name": NAME, "phone": PHONE, "email": EMAIL, "note": note})
    assert status == 201, body
    return str(body["id"])


async def customer_with_history(r: Running) -> tuple[str, str, list[str]]:
    """The customer, a deal won from a web lead, a letter in a thread, a callback, a Twilio
    call and a notification: (customer id, the deal's manager, the contacts)."""
    status, made = await r.call(
        "POST", "/api/crm/customers", r.admin, json={"name": NAME, "phones": [PHONE], "emails": [EMAIL], "note": NOTE}
    )
    assert status == 201, made
    web = await lead(r)
    owner, token = await accept(r, web)
    title = f"Поставка для {NAME}"
    status, _ = await r.call(
        "POST", f"/api/crm/contacts/{web}/finish", token, json={"outcome": "won", "amount": 125000, "title": title}
    )
    assert status == 200
    raw = enquiry(
        "<erase-1@erase.test>", sender=EMAIL, name=NAME, subject=f"Счёт для {NAME}", text=f"Я {NAME}, {PHONE}"
    )
    got = await messaging(r).intake.receive(raw, "imap")
    assert got.contact_id is not None
    reply = enquiry(
        "<erase-2@erase.test>", sender=EMAIL, name=NAME, subject="Re: счёт", in_reply_to="<erase-1@erase.test>"
    )
    await messaging(r).intake.receive(reply, "imap")
    await r.settle()
    for contact in list(r.server.dispatcher.board.contacts.values()):  # the letters, taken and answered
        assert contact.customer_id == made["id"]
        handler = contact.assigned_to or contact.offered_to
        assert handler is not None
        if contact.offered_to:
            await r.server.dispatcher.submit(ev.OfferAccepted(contact.id, handler))
        done = await r.call("POST", f"/api/contacts/{contact.id}/finish", await r.manager_token(handler), json={})
        assert done[0] == 200, done
    _, card = await r.call("GET", f"/api/crm/customers/{made['id']}", r.admin)
    contacts = [c["id"] for c in card["contacts"]]
    now = time.time()
    store = r.server.store
    await TelephonyStore(store).save_callback(
        CallbackRow("cb-erase", web, PHONE, NAME, status="done", requested_at=now, updated_at=now, email=EMAIL)
    )
    await MessagingStore(store).save_call("CA-erase", got.contact_id, PHONE, "+74950000000", "completed", now)
    await MessagingStore(store).add_notification(
        Notification(
            "n-erase", "erase:1", "ack", "email", EMAIL, "ru", f"Здравствуйте, {NAME}", "Мы получили", now, web
        )
    )
    await store.audit(now, "supervisor", "transfer", web, {"note": f"{NAME} просила перезвонить на {PHONE}"})
    return made["id"], owner, contacts


async def calls_and_copies(r: Running, backend: Backend, customer_id: str, files: Path) -> None:
    """A voicemail the customer left (its contact, its recording, its call's queue_log lines,
    the external CRM's match), someone else's call, and the cluster's copies of the contacts."""
    now = time.time()
    recording = f"acd/voicemail/{VOICEMAIL}.wav"
    await r.server.store.create_contact(
        Contact(
            id="vm-erase",
            channel=Channel.CALLBACK,
            arrived_at=now,
            customer_id=customer_id,
            customer_name=NAME,
            phone=PHONE,
            status=ContactStatus.FINISHED,
            outcome=Outcome.DONE,
            finished_at=now,
            payload={
                "voicemail": {"recording": recording, "seconds": 7.5},
                "uniqueid": VOICEMAIL,
                "external": {"system": "bitrix24", "customer": "CONTACT:12", "name": NAME},
            },
        )
    )
    (files / "sounds" / "acd" / "voicemail").mkdir(parents=True)
    (files / "sounds" / recording).write_bytes(f"RIFF {NAME} {PHONE}".encode())  # their voice, as far as a test goes
    (files / "sounds" / "acd" / "voicemail" / f"{STRANGER}.wav").write_bytes(b"RIFF")
    (files / "queue_log").write_text(
        f"1765150000|{VOICEMAIL}|sales|NONE|ENTERQUEUE||{DIALLED}|1\n"
        f"1765150060|{VOICEMAIL}|sales|NONE|EXITWITHTIMEOUT|1|1|60\n"
        f"1765150200|{STRANGER}|sales|NONE|ENTERQUEUE||+79035550099|1\n"
    )
    async with backend.raw() as conn:
        contact = {"id": "vm-erase", "customer_name": NAME, "phone": PHONE, "email": EMAIL}
        await conn.execute(
            t.cluster_events.insert(),
            [
                {"at": now, "origin": "n2", "body": {"type": "ContactArrived", "contact": contact}},
                {"at": now, "origin": "n2", "body": {"contact": contact}, "handled_at": now, "outcome": contact},
            ],
        )
        await conn.execute(t.cluster_effects.insert(), {"at": now, "body": {"cmd": "offer", "contact": contact}})


def files_holding(root: Path, words: tuple[str, ...]) -> list[tuple[str, str]]:
    """(file, word) for every file under `root` whose bytes hold one of `words`."""
    return sorted(
        (str(f.relative_to(root)), w)
        for f in root.rglob("*")
        if f.is_file()
        for w in words
        if w.casefold() in f.read_bytes().decode("utf-8", "replace").casefold()
    )


async def texts_holding(backend: Backend, words: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(table, column, word) for every column of every table whose value, read as text
    (JSON, bytes too), holds one of `words` in any case: compared here, since SQLite's
    lower() folds only ASCII."""
    found = set()
    async with backend.raw() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    text = (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).casefold()
                    found |= {(table.name, column, w) for w in words if w.casefold() in text}
    return sorted(found)


async def answers(r: Running, owner: str) -> dict[str, Any]:
    """What reports, ratings and deals say, to be the same before and after."""
    deals = (await r.call("GET", "/api/crm/deals?limit=500", r.admin))[1]["deals"]
    return {
        "deals": sorted((d["id"], d["amount"], d["status"], d["owner"], d["closed_at"]) for d in deals),
        "rating": {
            k: v for k, v in (await r.call("GET", f"/api/crm/ratings/{owner}", r.admin))[1].items() if k != "as_of"
        },
        "summary": (await r.call("GET", "/api/export/summary.csv", r.admin))[1],
        "contacts": len((await r.call("GET", "/api/contacts?limit=500", r.admin))[1]["contacts"]),
        "decisions": len((await r.call("GET", "/api/decisions?limit=500", r.admin))[1]["decisions"]),
    }


async def test_an_erased_customer_is_nowhere_and_the_statistics_do_not_move(
    erasing: Running, backend: Backend, tmp_path: Path
) -> None:
    r, files = erasing, tmp_path / "files"
    customer_id, owner, contacts = await customer_with_history(r)
    await calls_and_copies(r, backend, customer_id, files)
    assert len(contacts) >= 2  # the web lead and the letters
    held = {table for table, _, _ in await texts_holding(backend, (NAME, EMAIL, PHONE))}
    places = {"crm_customers", "crm_customer_keys", "crm_deals", "contacts", "email_messages", "notifications"}
    assert held >= places | {"callbacks", "twilio_calls", "audit", "cluster_events", "cluster_effects"}
    in_files = {f for f, _ in files_holding(files, (*SECRETS, DIALLED))}
    assert in_files == {"queue_log", f"sounds/acd/voicemail/{VOICEMAIL}.wav"}  # the check finds them before
    size = (files / "queue_log").stat().st_size
    await r.call("POST", "/api/crm/ratings/recompute", r.admin)
    before = await answers(r, owner)

    status, done = await r.call(
        "POST", f"/api/crm/customers/{customer_id}/erase", r.admin, json={"reason": f"заявление {NAME} от 01.12"}
    )
    assert status == 200, done
    assert done["already_erased"] is False and done["changed"]["contacts"] >= 3
    assert done["files"] == {"queue_log_lines": 1, "recordings": 1} and done["kept"] == []
    assert "the office must erase it there" in done["external"]["notice"]
    assert "bitrix24 CONTACT:12" in done["external"]["references"]

    assert await texts_holding(backend, SECRETS) == []
    assert files_holding(files, (*SECRETS, DIALLED)) == []
    assert (files / "sounds" / "acd" / "voicemail" / f"{STRANGER}.wav").exists()  # not theirs: kept
    queue_log = (files / "queue_log").read_text().splitlines()
    assert (files / "queue_log").stat().st_size == size  # masked in place: a reader's offset holds
    assert queue_log[0] == f"1765150000|{VOICEMAIL}|sales|NONE|ENTERQUEUE||***********|1"
    assert queue_log[1:] == [
        f"1765150060|{VOICEMAIL}|sales|NONE|EXITWITHTIMEOUT|1|1|60",
        f"1765150200|{STRANGER}|sales|NONE|ENTERQUEUE||+79035550099|1",
    ]
    # erasing again finds the files by the calls the contacts still name: nothing more to do
    status, again = await r.call(
        "POST", f"/api/crm/customers/{customer_id}/erase", r.admin, json={"reason": "повторно"}
    )
    assert status == 200 and again["already_erased"] is True
    assert again["files"] == {"queue_log_lines": 0, "recordings": 0} and again["kept"] == []
    await r.call("POST", "/api/crm/ratings/recompute", r.admin)
    assert await answers(r, owner) == before
    status, card = await r.call("GET", f"/api/crm/customers/{customer_id}", r.admin)
    person = card["customer"]
    assert status == 200 and person["phones"] == [] and person["emails"] == [] and person["note"] == ""
    assert person["name"] == "[erased]" and len(card["deals"]) == 1 and card["deals"][0]["amount"] == 125000
    for path in (
        "/api/crm/export/customers.csv",
        "/api/crm/export/deals.csv",
        "/api/export/contacts.csv",
        "/api/audit",
    ):
        status, text = await r.call("GET", path, r.admin)
        assert status == 200
        assert not [s for s in SECRETS if s.lower() in str(text).lower()], path
    audit = (await r.call("GET", "/api/audit", r.admin))[1]
    entry = next(a for a in audit["audit"] if a["action"] == "erase_customer")
    assert entry["target"] == customer_id and entry["actor"] == "admin"

    # the same number is a stranger now: a new lead makes a new customer
    again = await lead(r, "снова")
    status, contact = await r.call("GET", f"/api/contacts/{again}", r.admin)
    assert contact["customer_id"] not in (None, customer_id)


async def test_a_live_contact_stops_the_erasure_until_it_is_finished(running: Running) -> None:
    r = running
    status, made = await r.call("POST", "/api/crm/customers", r.admin, json={"name": NAME, "phones": [PHONE]})
    cid = await lead(r)
    status, body = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "заявление"})
    assert status == 409 and body["error"]["code"] == "live_contacts" and cid in body["error"]["message"]
    assert (await r.call("GET", f"/api/crm/customers/{made['id']}", r.admin))[1]["customer"]["name"] == NAME
    _, token = await accept(r, cid)
    assert (await r.call("POST", f"/api/contacts/{cid}/finish", token, json={"outcome": "done"}))[0] == 200
    status, body = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "заявление"})
    assert status == 200 and body["already_erased"] is False
    assert body["external"] is None and body["kept"] == []  # no external CRM, no files configured
    first = (await r.call("GET", f"/api/crm/customers/{made['id']}", r.admin))[1]
    status, body = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "повторно"})
    assert status == 200 and body["already_erased"] is True
    assert (await r.call("GET", f"/api/crm/customers/{made['id']}", r.admin))[1] == first


async def test_only_an_administrator_erases_and_a_reason_is_required(running: Running) -> None:
    r = running
    _, made = await r.call("POST", "/api/crm/customers", r.admin, json={"name": NAME, "phones": [PHONE]})
    path = f"/api/crm/customers/{made['id']}/erase"
    manager = await r.manager_token(next(iter(r.server.dispatcher.board.managers)))
    for token in (r.supervisor, manager):
        assert (await r.call("POST", path, token, json={"reason": "x"}))[0] == 403
    assert (await r.call("POST", path, r.admin, json={"reason": "  "}))[0] == 400
    assert (await r.call("POST", path, r.admin, json={}))[0] == 400
    assert (await r.call("POST", "/api/crm/customers/nobody/erase", r.admin, json={"reason": "x"}))[0] == 404
    assert (await r.call("GET", f"/api/crm/customers/{made['id']}", r.admin))[1]["customer"]["phones"] == [PHONE]


def test_the_command_line_erases_a_customer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'acd.db'}"
    common = ["--config", str(EXAMPLE), "--db", db]
    (tmp_path / "customers.csv").write_text(f"name,phone,email,note\n{NAME},{PHONE},{EMAIL},{NOTE}\n", encoding="utf-8")
    assert main(["crm", "import", "customers", str(tmp_path / "customers.csv"), *common]) == 0
    assert main(["crm", "export", "customers", *common]) == 0
    exported = capsys.readouterr().out
    customer_id = next(line.split(",")[0] for line in exported.splitlines()[1:] if NAME in line)
    with pytest.raises(SystemExit):  # --reason is required
        main(["crm", "erase", customer_id, *common])
    assert main(["crm", "erase", "nobody", "--reason", "заявление", *common]) == 1
    assert main(["crm", "erase", customer_id, "--reason", "заявление", *common]) == 0
    assert "erased" in capsys.readouterr().out
    assert main(["crm", "export", "customers", *common]) == 0
    assert not [s for s in SECRETS if s in capsys.readouterr().out]


def test_the_command_line_cleans_the_files_and_names_what_it_could_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`acd crm erase` is another process than the server that appends to queue_log: the
    lines are masked in place, so the server's appends are not lost; a recording that cannot
    be deleted is named on stderr and the exit status is 3."""
    config = tmp_path / "acd.yaml"
    config.write_text(
        EXAMPLE.read_text(encoding="utf-8")
        .replace("flows_dir: ../ivr_flows", f"flows_dir: {EXAMPLE.parent.parent / 'ivr_flows'}")
        .replace("queue_log: null", f"queue_log: {tmp_path / 'queue_log'}")
        .replace("sounds_dir: null", f"sounds_dir: {tmp_path / 'sounds'}"),
        encoding="utf-8",
    )
    common = ["--config", str(config), "--db", f"sqlite:///{tmp_path / 'acd.db'}"]
    (tmp_path / "customers.csv").write_text(f"name,phone\n{NAME},{PHONE}\n", encoding="utf-8")
    assert main(["crm", "import", "customers", str(tmp_path / "customers.csv"), *common]) == 0
    assert main(["crm", "export", "customers", *common]) == 0
    customer_id = next(line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:] if NAME in line)

    async def voicemail() -> None:
        async with await open_store(f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}") as store:
            payload = {"voicemail": {"recording": f"acd/voicemail/{VOICEMAIL}.wav"}, "uniqueid": VOICEMAIL}
            finished = ContactStatus.FINISHED
            contact = Contact("vm", Channel.CALLBACK, 1.0, customer_id=customer_id, phone=PHONE, status=finished)
            await store.create_contact(replace(contact, payload=payload))

    asyncio.run(voicemail())
    (tmp_path / "sounds" / "acd" / "voicemail" / f"{VOICEMAIL}.wav").mkdir(parents=True)  # cannot be unlinked
    (tmp_path / "queue_log").write_text(f"1765150000|{VOICEMAIL}|sales|NONE|ENTERQUEUE||{DIALLED}|1\n")

    assert main(["crm", "erase", customer_id, "--reason", "заявление", *common]) == 3
    out, err = capsys.readouterr()
    assert "erased, 1 contacts; files: 1 queue_log_lines, 0 recordings" in out
    assert f"kept {tmp_path / 'sounds' / 'acd' / 'voicemail' / VOICEMAIL}.wav: cannot be deleted" in err
    assert DIALLED not in (tmp_path / "queue_log").read_text()
