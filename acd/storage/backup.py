"""Storage: a consistent copy of a SQLite database while the server keeps writing to it.

Copying `acd.db` with `cp` while the server runs misses the commits still in the
write-ahead log (`acd.db-wal`) or tears a page the checkpoint thread is writing back. SQLite's
online backup API (https://www.sqlite.org/backup.html) reads the database as one snapshot
through its own locks instead, so the copy holds every commit made before it started.

    report = backup("sqlite+aiosqlite:///data/acd.db", Path("/backups/acd.db"))

It copies in one step: a step-by-step backup restarts from the first page whenever another
connection writes in between, which with leads arriving all day would be never-ending. One
step is one read transaction, and in WAL mode a reader does not hold up the writers; the log
only grows until the copy ends (the checkpoints cannot start it over under a reader).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from acd.storage.store import BUSY_TIMEOUT_MS

__all__ = ["BackupError", "BackupReport", "RestoreReport", "backup", "restore", "sqlite_path"]

_VERSIONS: Final = "SELECT version_num FROM alembic_version ORDER BY version_num"


class BackupError(Exception):
    """The copy was not made (or not kept): the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    size_bytes: int
    contacts: int
    revisions: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreReport:
    path: Path
    contacts: int
    revisions: tuple[str, ...]
    replaced: Path | None  # the database that was there before, kept beside it


def sqlite_path(url: str) -> Path:
    """The file a SQLite URL names; `BackupError` for PostgreSQL and anything else."""
    try:
        sa_url = make_url(url)
    except ArgumentError as err:
        raise BackupError(f"not a database URL: {url!r}") from err
    backend = sa_url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        raise BackupError(
            "this is a PostgreSQL database: back it up with PostgreSQL's own tool, e.g. "
            "`pg_dump --format=custom --file=acd.dump <database>` (restore with pg_restore); "
            "it takes a consistent snapshot while the server runs"
        )
    if backend != "sqlite":
        raise BackupError(f"cannot back up {sa_url.render_as_string(hide_password=True)!r}: not SQLite")
    database = sa_url.database or ""
    if database in ("", ":memory:") or sa_url.query.get("mode") == "memory":
        raise BackupError("an in-memory database has no file to back up")
    return Path(database)


def backup(url: str, dest: Path) -> BackupReport:
    """Copy the SQLite database at `url` to `dest` (a file, or an existing directory to put
    `acd-YYYYmmdd-HHMMSS.db` in), verified before it takes the name: the copy is written
    beside `dest` and renamed over it only once `PRAGMA integrity_check` passes and its
    migration revisions are the source's. An earlier backup at `dest` stays whole until then."""
    source = sqlite_path(url)
    started = time.monotonic()
    if dest.is_dir():
        dest = dest / time.strftime("acd-%Y%m%d-%H%M%S.db")
    folder = dest.parent
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    if not folder.is_dir():
        raise BackupError(f"{folder}: the destination folder does not exist")
    if dest.exists() and dest.samefile(source):
        raise BackupError(f"{dest} is the database itself: choose another destination")
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as err:
        raise BackupError(f"{folder}: cannot write there ({err.strerror})") from err
    os.close(fd)
    tmp = Path(name)
    try:
        with _connect(source) as src:
            # "file is not a database" shows up at the first read, not at connect
            revisions = _revisions(src, source)
            with _connect(tmp) as copy:
                _copy(src, copy, source)
                # the copy is one self-contained file: no -wal beside it to lose on the way
                copy.execute("PRAGMA journal_mode=DELETE").fetchall()
            # migrations run only when a server starts: one starting during the copy is the
            # only way these differ, and then the copy's schema may be half migrated
            if _revisions_of_copy(tmp) != revisions:
                raise BackupError(f"{source}: its schema changed during the copy (a server started?): try again")
        contacts = _verify(tmp)
        _fsync(tmp)
        os.replace(tmp, dest)
        _fsync(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupReport(dest, dest.stat().st_size, contacts, revisions, time.monotonic() - started)


def restore(backup_file: Path, url: str) -> RestoreReport:
    """Put `backup_file` in place of the SQLite database at `url`, but only if no process has
    that database open: a running server's connections would go on writing to pages the
    restore replaced. The file is locked for the whole restore (a server that starts
    meanwhile waits, or gives up), the database it had is first copied beside it to
    `<name>.before-restore-YYYYmmdd-HHMMSS`, and the restore is one SQLite transaction:
    interrupted, it rolls back to the database as it was."""
    target = sqlite_path(url)
    if not backup_file.is_file():
        raise BackupError(f"{backup_file}: no such backup file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: the database's folder does not exist")
    if target.exists() and target.samefile(backup_file):
        raise BackupError(f"{backup_file} is the database itself")
    with _connect(backup_file) as copy:
        revisions = _revisions(copy, backup_file)
    _verify(backup_file)
    replaced = None
    with _connect(target, create=True, wait=False) as db:
        try:
            # EXCLUSIVE locking mode keeps the lock after the transaction, until close; any
            # connection open elsewhere (a WAL reader holds a shared lock) makes this fail
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN EXCLUSIVE")
            db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            raise BackupError(
                f"{target} is in use ({err}): stop the server (and anything else that has it open), then restore"
            ) from err
        # the log's commits go into the file first, so that the copy kept below has them
        db.execute("PRAGMA journal_mode=DELETE").fetchall()
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            replaced = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
            with _connect(replaced, create=True) as kept:
                _copy(db, kept, target)
            _fsync(replaced)
        with _connect(backup_file) as copy:
            _copy(copy, db, backup_file)
    contacts = _verify(target)
    return RestoreReport(target, contacts, revisions, replaced)


@contextlib.contextmanager
def _connect(path: Path, *, create: bool = False, wait: bool = True) -> Iterator[sqlite3.Connection]:
    # mode=rw: a mistyped path must fail, not leave an empty database behind. (Not mode=ro:
    # a reader of a WAL database needs to write to the -shm file beside it.)
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    timeout = BUSY_TIMEOUT_MS / 1000 if wait else 0
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as err:
        raise BackupError(f"{path}: cannot open it ({err})") from err
    try:
        # the store's lower() folds Cyrillic too (acd.storage.store.sqlite_pragmas): an index
        # on it must be checked with the same function
        conn.create_function("lower", 1, _lower, deterministic=True)
        yield conn
    finally:
        conn.close()


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _revisions(conn: sqlite3.Connection, path: Path) -> tuple[str, ...]:
    try:
        return tuple(row[0] for row in conn.execute(_VERSIONS))
    except sqlite3.DatabaseError as err:
        if "no such table" in str(err):
            raise BackupError(f"{path}: not an acd database (it has no migration revisions)") from err
        raise BackupError(f"{path}: {err}") from err


def _revisions_of_copy(path: Path) -> tuple[str, ...]:
    with _connect(path) as conn:
        return _revisions(conn, path)


def _copy(src: sqlite3.Connection, copy: sqlite3.Connection, source: Path) -> None:
    try:
        src.backup(copy, pages=-1)  # one step: see the module's docstring
    except sqlite3.Error as err:
        raise BackupError(f"{source}: the copy failed ({err})") from err


def _verify(path: Path) -> int:
    with _connect(path) as conn:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"the copy failed its integrity check: {'; '.join(problems[:5])}")
        return int(conn.execute("SELECT count(*) FROM contacts").fetchone()[0])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
