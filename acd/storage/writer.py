"""Storage: the server's SQLite writer process, for the transactions that carry a batch.

A batch of web leads is a few hundred rows in four tables. Through aiosqlite every
statement, fetch, commit and pool reset is a hand-off to the driver's thread and back, and
SQLAlchemy's work on each row holds the GIL that the event loop needs: together more CPU
than the rest of a lead's handling. A thread of our own changes neither, the GIL being
one. So `acd serve` on a SQLite file runs these transactions in a child process with
SQLAlchemy's synchronous driver, on the machine's other core: one round trip per batch
over a pipe the event loop reads itself (no threads), and the loop keeps its core for
HTTP and routing.

The work is a module-level function `work(connection, *args)` (it travels by name, as
pickle sends functions), its arguments and result plain data. The same functions run
in-process through `AsyncConnection.run_sync` wherever there is no writer process
(PostgreSQL, in-memory SQLite, a store opened by a tool or a test).

SQLite's own locking keeps the two processes' writes apart (WAL, busy timeout); the store
also queues its writers, so they rarely wait on each other. A writer that dies fails the
transactions in flight (they did not commit, and nobody was told they did) and is started
again for the next one. It ends when its input closes, so it also ends when the server is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sqlite3
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

T = TypeVar("T")
_LENGTH = struct.Struct("!I")
START_TIMEOUT_S = 60.0


class WriterGone(Exception):
    """The writer process ended during the transaction: it did not commit."""


class _Child(asyncio.SubprocessProtocol):
    """One writer process, and the requests written to it whose answers are still to
    come: it answers them in the order it got them. Its answers are read where the event
    loop reads the pipe and handed to their callers there: a reader task in between (and
    a shield) would cost an answer more turns of the loop, each behind everything else the
    loop has to do (the HTTP requests of a burst), while the writer waits for the next batch."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None
        self.waiting: deque[asyncio.Future[tuple[bool, Any]]] = deque()
        self._buffer = bytearray()
        self._greeted = False  # its first byte, "+": it has opened the database
        self._answers_ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)  # uvloop's is not a subclass

    @property
    def running(self) -> bool:
        return not (self._answers_ended or self.ended.done())

    def send(self, request: bytes) -> asyncio.Future[tuple[bool, Any]]:
        answer: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        stdin = None if self.transport is None else self.transport.get_pipe_transport(0)
        if stdin is None or stdin.is_closing() or not self.running:
            answer.set_result((False, _gone()))
            return answer
        self.waiting.append(answer)
        cast(asyncio.WriteTransport, stdin).write(_LENGTH.pack(len(request)) + request)
        return answer

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self._buffer += data
        if not self._greeted:
            self._greeted = True
            del self._buffer[:1]
            if not self.started.done():
                self.started.set_result(None)
        at, end = 0, len(self._buffer)
        while end - at >= _LENGTH.size:
            size = _LENGTH.unpack_from(self._buffer, at)[0]
            if end - at - _LENGTH.size < size:
                break
            answer = pickle.loads(self._buffer[at + _LENGTH.size : at + _LENGTH.size + size])
            at += _LENGTH.size + size
            waiting = self.waiting.popleft()
            if not waiting.done():  # a caller that gave up left its answer here
                waiting.set_result(answer)
        del self._buffer[:at]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        # Only the end of its answers fails what is still waiting: the process may be
        # reported gone before the last answers it wrote are read.
        if fd == 1:
            self._answers_ended = True
            self._fail_waiting()

    def process_exited(self) -> None:
        if not self.started.done():
            self.started.set_exception(WriterGone("the database writer process did not start"))
        if not self.ended.done():
            self.ended.set_result(None)

    def _fail_waiting(self) -> None:
        while self.waiting:
            waiting = self.waiting.popleft()
            if not waiting.done():
                waiting.set_result((False, _gone()))


def _gone() -> WriterGone:
    return WriterGone("the database writer process ended; the transaction did not commit")


class WriterProcess:
    """The parent's side. Requests are pipelined: a caller writes its request at once and
    waits for its answer, so a look-up queued behind a batch's write runs the moment that
    write commits, without a round trip through the event loop in between (and sees what
    it wrote). The process runs them one at a time, in the order written."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._child: _Child | None = None
        self._starting = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None or child.transport is None else child.transport.get_pid()

    async def start(self) -> None:
        await self._started()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` in one transaction, committed when it returns."""
        request = pickle.dumps((work, args), pickle.HIGHEST_PROTOCOL)
        child = self._child if self._child is not None and self._child.running else await self._started()
        # A caller that gives up cancels its answer; the answer still comes, in its turn.
        ok, result = await child.send(request)
        if not ok:
            raise result
        return result  # type: ignore[no-any-return]

    async def _started(self) -> _Child:
        async with self._starting:
            if self._child is not None:
                if self._child.running:
                    return self._child
                await self._ended(self._child)
            loop = asyncio.get_running_loop()
            _, child = await loop.subprocess_exec(
                _Child,
                sys.executable,
                "-c",
                "from acd.storage.writer import main; main()",
                self._url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
            )
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await asyncio.shield(child.started)
            except (WriterGone, TimeoutError) as err:
                await self._ended(child)
                raise WriterGone("the database writer process did not start") from err
            self._child = child
            return child

    async def _ended(self, child: _Child) -> None:
        assert child.transport is not None
        if not child.ended.done():
            with contextlib.suppress(ProcessLookupError):
                child.transport.kill()
        await child.ended
        child.transport.close()
        if self._child is child:
            self._child = None

    async def close(self) -> None:
        child, self._child = self._child, None
        if child is None or child.transport is None:
            return
        if not child.ended.done():
            stdin = child.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()  # it ends at end of input, after the transactions in hand
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.shield(child.ended)
        await self._ended(child)  # killed if it is still there


# ---- the writer process ----------------------------------------------------------------


# The write-ahead log is copied back into the database file by a thread of this process,
# between transactions, rather than by whichever commit crosses SQLite's threshold: that
# commit waits for the copy and two fsyncs (5-6 ms in the intake bench, one batch in about
# 25), and so does every lead of its batch, or, in the server's own process, every write
# queued behind it. The commits' own checkpoint stays, on every connection, as the backstop
# for a log the thread cannot keep short (its checkpoints never wait for a writer, so under
# a steady stream of batches the log starts over less often).
CHECKPOINT_EVERY_S = 0.05
BACKSTOP_PAGES = 4000


class _Checkpoints:
    """A thread that checkpoints the log (PASSIVE: it waits for nobody) once it is told a
    transaction committed, at most every CHECKPOINT_EVERY_S."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()

    def due(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        self._thread.join()

    def _run(self) -> None:
        from acd.storage.store import BUSY_TIMEOUT_MS

        conn = sqlite3.connect(self._path)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            while self._due.wait() and not self._stopping.is_set():
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as err:  # the commits' own checkpoint is still there
                    print(f"acd writer: checkpoint failed: {err}", file=sys.stderr)
                self._stopping.wait(CHECKPOINT_EVERY_S)
        finally:
            conn.close()


def checkpoint_backstop(dbapi_connection: Any, _record: Any) -> None:
    """For every connection to a database whose writer process checkpoints its log."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


def _serve(url: str, requests: BinaryIO, answers: BinaryIO) -> None:
    import sqlalchemy as sa

    from acd.storage.store import sqlite_pragmas

    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    sa.event.listen(engine, "connect", sqlite_pragmas)
    sa.event.listen(engine, "connect", checkpoint_backstop)
    with engine.connect():
        pass  # open the file (and fail here, not on the first lead, if it cannot)
    path = engine.url.database
    checkpoints = _Checkpoints(path) if path and path != ":memory:" else None
    try:
        _answer(engine, requests, answers, checkpoints)
    finally:
        if checkpoints is not None:
            checkpoints.stop()
        engine.dispose()


def _answer(engine: Any, requests: BinaryIO, answers: BinaryIO, checkpoints: _Checkpoints | None) -> None:
    answers.write(b"+")
    answers.flush()
    while header := requests.read(_LENGTH.size):
        if len(header) < _LENGTH.size:
            break
        request = requests.read(_LENGTH.unpack(header)[0])
        try:
            work, args = pickle.loads(request)
            with engine.begin() as conn:
                answer = pickle.dumps((True, work(conn, *args)), pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # the caller's to handle, as if it had run there
            try:
                answer = pickle.dumps((False, err), pickle.HIGHEST_PROTOCOL)
            except Exception:
                answer = pickle.dumps((False, RuntimeError(repr(err))), pickle.HIGHEST_PROTOCOL)
        answers.write(_LENGTH.pack(len(answer)) + answer)
        answers.flush()
        if checkpoints is not None:
            checkpoints.due()


def main() -> None:
    # The server decides when this process ends (by closing its input): a Ctrl-C that
    # reaches the whole process group must not cut a transaction short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, not into the answers
    _serve(sys.argv[1], sys.stdin.buffer, answers)
