"""`acd backup`: a consistent copy of the SQLite database taken while the server keeps taking
leads, and the operator's mistakes refused with a message that says what to do."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest

from acd.cli import main
from acd.free_port import free_port
from acd.storage import open_store
from tests.test_restart import LEAD, start_server, test_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "acd.example.yaml"
# finished contacts from earlier days, so that the copy takes long enough for the server to
# commit batches while it runs (about 25 MB)
HISTORY = 30_000


def acd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acd.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def acd_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`acd ARGS` run by the command line's own main() in this process: what it prints and
    the exit code it returns, without the second of start-up a new interpreter pays. The
    backup beside a serving server and the backup of the configured database still go
    through `python -m acd.cli` in a process of their own."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["acd", *args], code, out.getvalue(), err.getvalue())


async def acd_async(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "acd.cli", *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def new_database(path: Path, history: int = 0) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    await (await open_store(url)).close()
    if history:
        with sqlite3.connect(path) as conn:
            conn.execute(
                """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                INSERT INTO contacts (id, channel, arrived_at, criteria, customer_name, phone, email,
                    priority, required_skills, preferred, status, declined_by, step, step_since,
                    override, outcome, finished_at, payload)
                SELECT 'old-' || i, 'web', 1.6e9 + i, '{}', 'Клиент ' || i, '+7 900 ' || i, '', 0,
                    '[]', '[]', 'finished', '[]', 0, 1.6e9 + i, 0, 'done', 1.6e9 + i + 60,
                    '{"note": "' || hex(randomblob(300)) || '"}'
                FROM n""",
                (history,),
            )
    return url


def revisions(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version ORDER BY 1")]


@pytest.mark.slow
async def test_a_backup_taken_while_leads_pour_in_holds_every_lead_acknowledged_before_it(tmp_path: Path) -> None:
    config = test_config(tmp_path)
    source = tmp_path / "acd.db"
    db = await new_database(source, HISTORY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acked: list[tuple[float, str]] = []  # (when the 201 arrived, the lead's id)
    warmed_up = asyncio.Event()
    stop = asyncio.Event()
    proc = await start_server(config, db, port, tmp_path / "server.log")
    try:
        async with aiohttp.ClientSession() as http:

            async def submitter(worker: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    async with http.post(f"{base}/api/leads", json={**LEAD, "name": f"lead {worker}.{i}"}) as r:
                        assert r.status in (200, 201), await r.text()
                        acked.append((time.monotonic(), (await r.json())["id"]))
                    if len(acked) >= 300:
                        warmed_up.set()

            submitters = [asyncio.create_task(submitter(w)) for w in range(4)]
            await asyncio.wait_for(warmed_up.wait(), 60)
            started = time.monotonic()
            before = {lead for _, lead in acked}
            code, out, err = await acd_async("backup", "--db", db, str(tmp_path / "copy.db"))
            ended = time.monotonic()
            during = [t for t, _ in acked if started <= t <= ended]
            # as long again after the backup, for comparison: the same load without one
            await asyncio.sleep(ended - started)
            after = [t for t, _ in acked if ended < t]
            stop.set()
            await asyncio.gather(*submitters)
    finally:
        proc.terminate()
        await proc.wait()
    assert code == 0, err
    copied = re.search(r"backed up to .*: [0-9.]+ MB, ([0-9]+) contacts", out)
    assert copied and int(copied[1]) >= HISTORY + len(before), out
    pause = max(b - a for a, b in pairwise([started, *during, ended]))
    usual = max(b - a for a, b in pairwise([ended, *after]))
    print(
        f"BACKUP {out.strip()} | leads acknowledged during it: {len(during)}, "
        f"longest pause in intake: {pause * 1000:.0f} ms (without a backup: {usual * 1000:.0f} ms)"
    )
    assert during, "no lead was acknowledged while the backup ran"
    assert pause < 1.0, f"intake stalled for {pause:.2f} s during the backup"

    copy = tmp_path / "copy.db"
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert revisions(copy) == revisions(source)
    assert not list(tmp_path.glob(".copy.db.*")), "a temporary file was left behind"
    assert not Path(f"{copy}-wal").exists(), "the copy is not one self-contained file"
    store = await open_store(f"sqlite+aiosqlite:///{copy}")
    try:
        missing = [lead for lead in before if await store.get_contact(lead) is None]
        assert await store.get_contact(f"old-{HISTORY}") is not None
    finally:
        await store.close()
    assert not missing, f"{len(missing)} of {len(before)} leads acknowledged before the backup are not in it"


async def test_the_backup_of_the_configured_database_reports_what_it_copied(tmp_path: Path) -> None:
    source = tmp_path / "acd.db"
    db = await new_database(source, 50)
    # no --db: the database `serve` would use, here from ACD_DB_URL through the deployment file
    result = acd("backup", "--config", str(test_config(tmp_path)), str(tmp_path), env={"ACD_DB_URL": db})
    assert result.returncode == 0, result.stderr
    [copy] = tmp_path.glob("acd-*.db")
    assert f"backed up to {copy}: " in result.stdout
    assert " MB, 50 contacts, schema " in result.stdout and " s\n" in result.stdout
    assert revisions(copy) == revisions(source)


async def test_a_failed_backup_says_why_and_leaves_an_earlier_copy_alone(tmp_path: Path) -> None:
    good_path = tmp_path / "acd.db"
    good = await new_database(good_path, 3)
    earlier = tmp_path / "backups" / "acd.db"
    earlier.parent.mkdir()
    earlier.write_bytes(b"yesterday's copy")
    junk = tmp_path / "notes.db"
    junk.write_text("not a database at all\n" * 100)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()

    cases = [
        (junk, earlier, f"backup failed: {junk}: file is not a database"),
        (empty, earlier, f"backup failed: {empty}: not an acd database"),
        (tmp_path / "typo.db", earlier, f"backup failed: {tmp_path / 'typo.db'}: no such database file"),
        (
            tmp_path / "acd.db",
            tmp_path / "nowhere" / "acd.db",
            f"{tmp_path / 'nowhere'}: the destination folder does not exist",
        ),
    ]
    for source, dest, message in cases:
        result = acd_here("backup", "--db", f"sqlite:///{source}", str(dest))
        assert result.returncode == 1, result
        assert message in result.stderr, result.stderr
        assert not result.stdout
    assert not (tmp_path / "typo.db").exists(), "a mistyped source must not be created"
    assert earlier.read_bytes() == b"yesterday's copy"
    assert [p.name for p in earlier.parent.iterdir()] == ["acd.db"], "a temporary file was left behind"
    assert acd_here("backup", "--db", good, str(earlier)).returncode == 0  # the database itself is untouched


async def test_a_folder_it_cannot_write_to_is_named(tmp_path: Path) -> None:
    db = await new_database(tmp_path / "acd.db")
    if os.geteuid() == 0:  # root writes anywhere chmod allows nobody: use a read-only file system
        folder = Path("/sys")
        if os.access(folder, os.W_OK) and not os.path.ismount(folder):
            pytest.skip("no folder here that root cannot write to")
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
    result = acd_here("backup", "--db", db, str(folder / "acd.db"))
    assert result.returncode == 1
    assert f"backup failed: {folder}: cannot write there (" in result.stderr


def test_postgresql_is_sent_to_pg_dump(tmp_path: Path) -> None:
    result = acd_here("backup", "--db", "postgresql+asyncpg://postgres@127.0.0.1:5432/test", str(tmp_path / "acd.db"))
    assert result.returncode == 1
    assert "pg_dump" in result.stderr and "PostgreSQL" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
async def test_a_restore_is_refused_while_the_server_runs_and_puts_the_backup_back_once_it_stopped(
    tmp_path: Path,
) -> None:
    config = test_config(tmp_path)
    source = tmp_path / "acd.db"
    db = await new_database(source)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def submit(http: aiohttp.ClientSession, n: int) -> set[str]:
        ids = set()
        for i in range(n):
            async with http.post(f"{base}/api/leads", json={**LEAD, "name": f"lead {i}"}) as r:
                assert r.status in (200, 201), await r.text()
                ids.add((await r.json())["id"])
        return ids

    proc = await start_server(config, db, port, tmp_path / "server.log")
    try:
        async with aiohttp.ClientSession() as http:
            kept = await submit(http, 20)
            result = acd_here("backup", "--db", db, str(tmp_path / "copy.db"))
            assert result.returncode == 0, result.stderr
            later = await submit(http, 10)
            result = acd_here("restore", "--db", db, str(tmp_path / "copy.db"))
            assert result.returncode == 1 and not result.stdout
            assert f"restore failed: {source} is in use" in result.stderr and "stop the server" in result.stderr, (
                result.stderr
            )
            later |= await submit(http, 1)  # the server did not notice
    finally:
        proc.terminate()
        await proc.wait()

    result = acd_here("restore", "--db", db, str(tmp_path / "copy.db"))
    assert result.returncode == 0, result.stderr
    assert f"restored {tmp_path / 'copy.db'} into {source}: 20 contacts, schema " in result.stdout
    [replaced] = tmp_path.glob("acd.db.before-restore-*")
    assert f"the database it replaced is kept in {replaced}" in result.stdout

    proc = await start_server(config, db, port, tmp_path / "server.log")  # it runs on the restored file
    proc.terminate()
    await proc.wait()
    for path, present, absent in [(source, kept, later), (replaced, kept | later, set())]:
        store = await open_store(f"sqlite+aiosqlite:///{path}")
        try:
            assert all([await store.get_contact(lead) for lead in present]), path
            assert not any([await store.get_contact(lead) for lead in absent]), path
        finally:
            await store.close()


def test_a_restore_checks_the_backup_before_it_touches_the_database(tmp_path: Path) -> None:
    target = tmp_path / "acd.db"
    target.write_bytes(b"")
    junk = tmp_path / "copy.db"
    junk.write_text("not a database at all\n" * 100)
    for backup_file, message in [
        (junk, f"restore failed: {junk}: file is not a database"),
        (tmp_path / "typo.db", f"restore failed: {tmp_path / 'typo.db'}: no such backup file"),
        (target, f"restore failed: {target} is the database itself"),
    ]:
        result = acd_here("restore", "--db", f"sqlite:///{target}", str(backup_file))
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acd.db", "copy.db"]
    assert target.read_bytes() == b""
