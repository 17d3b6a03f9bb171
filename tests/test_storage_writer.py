"""The server's SQLite writer process (acd.storage.writer): the intake's batches written in a
child process give the same results as in-process, requests sent together are run and
answered in the order sent, a writer that dies fails only what was in flight, and a writer
never outlives its server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection
from test_storage import a_full_contact

from acd.core.model import Channel, Contact
from acd.storage import Conflict, StorageError, Store, open_store
from acd.storage.writer import WriterGone, WriterProcess

ROOT = Path(__file__).resolve().parents[1]


def lead(contact_id: str) -> Contact:
    return Contact(id=contact_id, channel=Channel.WEB, arrived_at=1_700_000_000.0, customer_name="Аня", phone="+79001")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent) counts as gone
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store with its writer process, as `acd serve` opens it."""
    opened = await open_store(f"sqlite:///{tmp_path / 'acd.db'}", writer_process=True)
    assert opened._writer is not None and opened._writer.pid is not None
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_batch_through_the_writer_process_is_stored_as_in_process(store: Store) -> None:
    full = a_full_contact("c-full")
    stored = await store.create_contacts([(full, None), (lead("c-2"), "key-2"), (lead("c-3"), "key-2")])
    (first, created1), (second, created2), (third, created3) = stored
    assert (created1, created2, created3) == (True, True, False)
    assert first.seq < second.seq and third.seq == second.seq  # the repeated key answers the first
    assert await store.get_contact("c-full") == replace(full, seq=first.seq)
    # a key seen in an earlier batch: nothing new, the stored contact comes back
    again = await store.create_contacts([(lead("c-4"), "key-2")])
    assert again == [(replace(lead("c-2"), seq=second.seq), False)]
    assert await store.get_contact("c-4") is None


async def test_a_refused_batch_is_refused_as_in_process_and_the_writer_goes_on(store: Store) -> None:
    assert store._writer is not None
    pid = store._writer.pid
    await store.create_contacts([(lead("c-1"), None)])
    with pytest.raises(Conflict):  # the database's refusal, raised in the writer, reaches the caller
        await store.create_contacts([(lead("c-2"), None), (lead("c-1"), None)])
    assert await store.get_contact("c-2") is None  # all or nothing
    [(stored, created)] = await store.create_contacts([(lead("c-2"), None)])
    assert created and stored.seq > 0 and store._writer.pid == pid


async def test_a_writer_that_dies_fails_the_batch_in_flight_and_is_started_again(store: Store) -> None:
    assert store._writer is not None
    first_pid = store._writer.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    with pytest.raises(StorageError, match="writer process ended"):
        await store.create_contacts([(lead("c-1"), None)])
    assert await store.get_contact("c-1") is None
    [(stored, created)] = await store.create_contacts([(lead("c-1"), None)])
    assert created and (await store.get_contact("c-1")) == stored
    assert store._writer.pid not in (None, first_pid)
    assert not alive(first_pid)


def in_the_database_file(path: Path, contact_id: str) -> bool:
    """Whether the contact's row is in the database file itself, not only in its log."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as db:
            return db.execute("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)).fetchone() is not None
    except sqlite3.DatabaseError:  # read in the middle of a checkpoint
        return False


async def test_the_writer_copies_its_log_into_the_database_file_after_its_transactions(
    store: Store, tmp_path: Path
) -> None:
    # SQLite's own checkpoint would wait for a log of 1,000 pages, and run inside the commit
    # that crosses it; the writer's thread does it after each transaction, out of its way.
    await store.create_contacts([(lead("c-1"), None)])
    deadline = time.monotonic() + 10
    while not in_the_database_file(tmp_path / "acd.db", "c-1"):
        assert time.monotonic() < deadline, "the transaction stayed in the write-ahead log"
        await asyncio.sleep(0.02)
    await store.create_contacts([(lead("c-2"), None)])  # and it goes on after one
    while not in_the_database_file(tmp_path / "acd.db", "c-2"):
        assert time.monotonic() < deadline, "the second transaction stayed in the write-ahead log"
        await asyncio.sleep(0.02)


async def test_closing_the_store_ends_the_writer(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'acd.db'}", writer_process=True)
    assert store._writer is not None
    pid = store._writer.pid
    assert pid is not None and alive(pid)
    await store.close()
    assert not alive(pid)


def test_the_writer_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    """kill -9 of the server closes the writer's input; it must not linger holding the file."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from acd.storage import open_store
        async def main():
            store = await open_store({f"sqlite:///{tmp_path / 'acd.db'}"!r}, writer_process=True)
            print(store._writer.pid, flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        writer_pid = int(server.stdout.readline())
        assert alive(writer_pid)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 10
    while alive(writer_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(writer_pid)


# Work for the writer process in the tests below: it imports this module by name.


def make_probe(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE probe (n INTEGER)")


def append(conn: Connection, n: int, pause: float) -> None:
    time.sleep(pause)
    conn.exec_driver_sql("INSERT INTO probe VALUES (?)", (n,))


def seen(conn: Connection) -> list[int]:
    return [n for (n,) in conn.exec_driver_sql("SELECT n FROM probe ORDER BY n")]


@pytest.fixture
async def writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WriterProcess]:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    process = WriterProcess(f"sqlite:///{tmp_path / 'probe.db'}")
    await process.start()
    await process.run(make_probe)
    try:
        yield process
    finally:
        await process.close()


async def test_requests_sent_together_run_in_the_order_sent_and_each_sees_the_one_before(
    writer: WriterProcess,
) -> None:
    # the slow first write is still running when the rest are sent; each runs after the one
    # before it has committed, and its answer comes back to its own caller
    answers = await asyncio.gather(
        writer.run(append, 1, 0.3), writer.run(seen), writer.run(append, 2, 0.0), writer.run(seen)
    )
    assert answers == [None, [1], None, [1, 2]]


async def test_a_writer_that_dies_fails_every_request_in_flight_and_the_next_one_starts_it_again(
    writer: WriterProcess,
) -> None:
    pid = writer.pid
    assert pid is not None
    in_flight = [asyncio.ensure_future(writer.run(append, n, 2.0)) for n in (1, 2, 3)]
    await asyncio.sleep(0.5)  # all three sent, the first one running
    os.kill(pid, signal.SIGKILL)
    for request in in_flight:
        with pytest.raises(WriterGone):
            await request
    assert await writer.run(seen) == []  # none of them committed
    assert writer.pid not in (None, pid)


async def test_a_caller_that_gives_up_leaves_its_answer_and_the_next_caller_gets_its_own(
    writer: WriterProcess,
) -> None:
    given_up = asyncio.ensure_future(writer.run(append, 1, 0.3))
    await asyncio.sleep(0.1)  # sent, and running
    given_up.cancel()
    # its write still commits in its turn; the answer that comes for it is not handed on
    assert await writer.run(seen) == [1]
    assert await writer.run(append, 2, 0.0) is None
    assert await writer.run(seen) == [1, 2]


async def test_closing_lets_the_transactions_in_hand_commit_and_answers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    process = WriterProcess(f"sqlite:///{tmp_path / 'probe.db'}")
    await process.run(make_probe)
    in_hand = [asyncio.ensure_future(process.run(append, n, 0.2)) for n in (1, 2)]
    await asyncio.sleep(0.05)  # both sent
    await process.close()
    # the process ends right after its last answers: they still reach their callers
    assert await asyncio.gather(*in_hand) == [None, None]
    again = WriterProcess(f"sqlite:///{tmp_path / 'probe.db'}")
    try:
        assert await again.run(seen) == [1, 2]
    finally:
        await again.close()
