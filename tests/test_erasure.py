"""A customer who withdrew consent (152-FZ, GDPR) is erased by an administrator: their name,
phones, e-mails, note, letters and numbers leave every table, API answer and export, in one
transaction; deals, outcomes, counts and ratings stay. Refused (409) while a contact of theirs
is live; idempotent; administrators only. A real server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_fixtures import EXAMPLE, Running
from mail_fixtures import enquiry, messaging
from storage_fixtures import Backend

from acd.cli import main
from acd.core import events as ev
from acd.storage.messaging import MessagingStore, Notification
from acd.storage.tables import metadata
from acd.storage.telephony import CallbackRow, TelephonyStore

NAME = "Ерасова Пелагея"
PHONE = "+79167770011"
EMAIL = "pelageya@erase-client.ru"
NOTE = "паспорт 4509 123456"
SECRETS = (NAME, PHONE, PHONE[1:], EMAIL, NOTE)


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


async def test_an_erased_customer_is_nowhere_and_the_statistics_do_not_move(mailed: Running, backend: Backend) -> None:
    r = mailed
    customer_id, owner, contacts = await customer_with_history(r)
    assert len(contacts) >= 2  # the web lead and the letters
    held = {table for table, _, _ in await texts_holding(backend, (NAME, EMAIL, PHONE))}
    places = {"crm_customers", "crm_customer_keys", "crm_deals", "contacts", "email_messages", "notifications"}
    assert held >= places | {"callbacks", "twilio_calls", "audit"}  # the check finds them before
    await r.call("POST", "/api/crm/ratings/recompute", r.admin)
    before = await answers(r, owner)

    status, done = await r.call(
        "POST", f"/api/crm/customers/{customer_id}/erase", r.admin, json={"reason": f"заявление {NAME} от 01.12"}
    )
    assert status == 200, done
    assert done["already_erased"] is False and done["changed"]["contacts"] >= 2

    assert await texts_holding(backend, SECRETS) == []
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
