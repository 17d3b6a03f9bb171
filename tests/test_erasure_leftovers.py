"""What an erasure must not leave behind beyond the rows it rewrites: on SQLite the old bytes
of those rows (in the database file's freed cells, in its write-ahead log until a checkpoint);
the external CRM's look-ups cached in memory under the customer's phone and e-mail; their
name, phone and e-mail nested in the CRM outbox's bodies, whichever way the phone is spelled.
A real server on SQLite (both ways it writes) and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from api_fixtures import Running, start, stop
from crm_external_fixtures import stand_in, with_external
from mail_fixtures import Sink, mail_deployment, messaging
from storage_fixtures import Backend
from test_crm_external_http import OfficeCrm, settings
from test_erasure import EMAIL, NAME, NOTE, PHONE, accept, calls_and_copies, customer_with_history

from acd.api.crm_sync import CRM_SYNC
from acd.app import build
from acd.storage import default_sqlite_url, open_store
from acd.storage.crm_sync import SyncItem, SyncStore

SPELLED = "8 (916) 777-00-11"  # PHONE as a caller or a form may write it


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    """A SQLite file of the test's own (the store migrates it on opening)."""
    return Backend("sqlite", default_sqlite_url(tmp_path / "data"))


def spellings(*words: str) -> list[bytes]:
    """How each word may lie in a file: as UTF-8 text and as JSON writes it (\\u escapes),
    in its own case and folded."""
    out: set[bytes] = set()
    for w in words:
        for v in (w, w.casefold()):
            out |= {v.encode(), json.dumps(v).strip('"').encode()}
    return sorted(out)


def sqlite_files(sqlite: Backend) -> list[Path]:
    db = Path(sqlite.url.split("///", 1)[1])
    return [db, db.with_name(f"{db.name}-wal")]


def holding(files: list[Path], secrets: list[bytes]) -> set[tuple[str, str]]:
    return {(f.name, s.decode()) for f in files if f.exists() for s in secrets if s in f.read_bytes()}


async def notified(r: Running) -> None:
    """The notifier done with what is due: a letter being sent records its recipient's
    address once it is out, and one sent while the erasure runs would hold it again."""
    await messaging(r).notifier.send_due()  # after the round in flight, if any


@pytest.fixture(params=[True, False], ids=["writer-process", "in-process"])
async def on_sqlite(
    request: pytest.FixtureRequest, sqlite: Backend, sink: Sink, tmp_path: Path
) -> AsyncIterator[Running]:
    """A server on a SQLite file, its batches written by the writer process (as `acd serve`
    does) or in its own process (as a tool's store)."""
    d = mail_deployment(sink.port)
    root = tmp_path / "files"
    d = replace(d, asterisk=replace(d.asterisk, queue_log=str(root / "queue_log"), sounds_dir=str(root / "sounds")))
    store = await open_store(sqlite.url, writer_process=request.param)
    assert (store._writer is not None) is request.param
    server = await build(d, store, demo=True)
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()
    r = Running(server, http, ClientSession(), await store.create_token("admin", None), "")
    try:
        yield r
    finally:
        await stop(r)


async def test_sqlite_files_keep_no_old_bytes_of_an_erased_customer(
    on_sqlite: Running, sqlite: Backend, tmp_path: Path
) -> None:
    r = on_sqlite
    customer_id, _, _ = await customer_with_history(r)
    await calls_and_copies(r, sqlite, customer_id, tmp_path / "files")
    await notified(r)
    secrets, files = spellings(NAME, EMAIL, NOTE, PHONE[2:]), sqlite_files(sqlite)
    assert holding(files, secrets)  # the check finds them before

    status, done = await r.call("POST", f"/api/crm/customers/{customer_id}/erase", r.admin, json={"reason": "просьба"})
    assert status == 200 and done["kept"] == [], done

    assert holding(files, secrets) == set()
    assert files[1].stat().st_size == 0  # the log was cut, not only copied
    status, card = await r.call("GET", f"/api/crm/customers/{customer_id}", r.admin)  # the file is sound
    assert status == 200 and card["customer"]["name"] == "[erased]"
    with closing(sqlite3.connect(files[0])) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_reader_holding_the_sqlite_log_is_reported_and_the_next_erasure_cuts_it(
    on_sqlite: Running, sqlite: Backend
) -> None:
    r = on_sqlite
    status, made = await r.call(
        "POST", "/api/crm/customers", r.admin, json={"name": NAME, "phones": [PHONE], "emails": [EMAIL], "note": NOTE}
    )
    assert status == 201
    db, wal = sqlite_files(sqlite)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM crm_customers").fetchone() == (1,)  # its snapshot: before
        status, done = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "x"})
        assert status == 200 and done["already_erased"] is False
        assert [k["path"] for k in done["kept"]] == [str(wal)]
        assert "still holds old values until its next checkpoint" in done["kept"][0]["reason"]
        assert holding([wal], spellings(NAME))  # as reported
    finally:
        reader.close()
    status, again = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "x"})
    assert status == 200 and again["already_erased"] is True and again["kept"] == []
    assert holding([db, wal], spellings(NAME, EMAIL, NOTE, PHONE[2:])) == set()


async def test_the_outbox_loses_nested_personal_fields_whichever_way_the_phone_is_spelled(running: Running) -> None:
    """The CRM outbox's body names the customer under `customer`, their phone in E.164 or as
    the adapter wrote it; free text in it and its last error may spell the phone any way."""
    r = running
    status, made = await r.call("POST", "/api/crm/customers", r.admin, json={"name": NAME, "phones": [PHONE]})
    assert status == 201
    status, lead = await r.call("POST", "/api/leads", json={"name": "Пелагея", "phone": PHONE})
    assert status == 201
    _, token = await accept(r, lead["id"])
    assert (await r.call("POST", f"/api/contacts/{lead['id']}/finish", token, json={}))[0] == 200
    body = {
        "event": "contact.finished",
        "contact_id": lead["id"],
        "customer": {"id": made["id"], "name": NAME, "phone": SPELLED, "email": EMAIL},
        "lead": {"contacts": [{"phone": "+7 916 777 0011", "name": "Пелагея"}], "comment": f"звонить {SPELLED}"},
        "external": {"customer": "C-1", "deal": "D-7"},
    }
    outbox = SyncStore(r.server.store)
    await outbox.add([SyncItem("k-erase", lead["id"], body, time.time())])
    item = await outbox.get("k-erase")
    assert item is not None
    item.status, item.last_error = "failed", "HTTPError: 422 phone 8-916-777-00-11 is taken"
    await outbox.update(item)

    status, done = await r.call("POST", f"/api/crm/customers/{made['id']}/erase", r.admin, json={"reason": "x"})
    assert status == 200, done

    item = await outbox.get("k-erase")
    assert item is not None
    assert item.body["customer"] == {"id": made["id"], "name": None, "phone": None, "email": None}
    assert item.body["lead"] == {"contacts": [{"phone": None, "name": None}], "comment": "звонить [erased]"}
    assert item.body["external"] == {"customer": "C-1", "deal": "D-7"}  # the office erases there by these
    assert item.last_error == "HTTPError: 422 phone [erased] is taken"
    raw = json.dumps(item.body, ensure_ascii=False) + item.last_error
    assert not [w for w in (NAME, EMAIL, PHONE, SPELLED, "8-916-777-00-11", "+7 916 777 0011", "Пелагея") if w in raw]


async def test_the_external_crm_s_cached_answers_for_the_erased_customer_are_dropped(backend: Backend) -> None:
    """A stranger's call is looked up in the office's CRM and the answer, naming them, is
    cached by their phone and e-mail. Once they are erased it is gone from the cache (another
    caller's stays): their next call asks the CRM afresh."""
    office = OfficeCrm(
        customers={
            PHONE: {"customer": {"id": "C-1", "name": NAME}},
            "+79035550099": {"customer": {"id": "C-2", "name": "Другой Клиент"}},
        }
    )
    async with stand_in(office.app()) as crm_server:
        r = await start(backend, with_external(settings(str(crm_server.make_url("")).rstrip("/"))))
        try:
            sync = r.server.app[CRM_SYNC]
            leads = []
            for person in ({"phone": SPELLED, "email": EMAIL}, {"phone": "+79035550099"}):
                status, lead = await r.call("POST", "/api/leads", json={"name": NAME, **person})
                assert status == 201, lead
                leads.append(lead["id"])
            for cid in leads:
                _, token = await accept(r, cid)
                assert (await r.call("POST", f"/api/contacts/{cid}/finish", token, json={}))[0] == 200
            assert len(office.lookups) == 2
            assert {phone for phone, _ in sync._cache} == {PHONE, "+79035550099"}
            _, contact = await r.call("GET", f"/api/contacts/{leads[0]}", r.admin)

            status, done = await r.call(
                "POST", f"/api/crm/customers/{contact['customer_id']}/erase", r.admin, json={"reason": "x"}
            )
            assert status == 200, done
            assert done["changed"]["lookup_cache"] == 1
            assert [phone for phone, _ in sync._cache] == ["+79035550099"]
            assert NAME not in repr(sync._cache)

            status, _ = await r.call("POST", "/api/leads", json={"name": "Новая", "phone": PHONE, "email": EMAIL})
            assert status == 201
            await r.settle()
            assert len(office.lookups) == 3  # asked afresh, not answered from memory
        finally:
            await stop(r)
