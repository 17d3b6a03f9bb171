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
import os
import pickle
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")
_LENGTH = struct.Struct("!I")
START_TIMEOUT_S = 60.0


class WriterGone(Exception):
    """The writer process ended during the transaction: it did not commit."""


@dataclass(eq=False)
class _Child:
    """One writer process and the requests written to it whose answers are still to come:
    it answers them in the order it got them."""

    proc: asyncio.subprocess.Process
    waiting: deque[asyncio.Future[tuple[bool, Any]]] = field(default_factory=deque)
    reader: asyncio.Task[None] | None = None


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
        return None if self._child is None else self._child.proc.pid

    async def start(self) -> None:
        await self._started()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` in one transaction, committed when it returns."""
        request = pickle.dumps((work, args), pickle.HIGHEST_PROTOCOL)
        child = await self._started()
        assert child.proc.stdin is not None
        answer: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        child.waiting.append(answer)
        try:
            child.proc.stdin.write(_LENGTH.pack(len(request)) + request)
            await child.proc.stdin.drain()
        except ConnectionError:
            pass  # the reader sees the end too, and fails every request still waiting
        # shielded: a caller that gives up leaves its answer to the reader, in its turn
        ok, result = await asyncio.shield(answer)
        if not ok:
            raise result
        return result  # type: ignore[no-any-return]

    async def _read_answers(self, child: _Child) -> None:
        stdout = child.proc.stdout
        assert stdout is not None
        try:
            while True:
                size = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))[0]
                answer = pickle.loads(await stdout.readexactly(size))
                child.waiting.popleft().set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._ended(child)
            gone = WriterGone("the database writer process ended; the transaction did not commit")
            while child.waiting:
                waiting = child.waiting.popleft()
                if not waiting.done():
                    waiting.set_result((False, gone))

    async def _started(self) -> _Child:
        child = self._child
        if child is not None and child.proc.returncode is None:
            return child
        async with self._starting:
            if self._child is not None and self._child.proc.returncode is None:
                return self._child
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from acd.storage.writer import main; main()",
                self._url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            child = _Child(proc)
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await proc.stdout.readexactly(1)  # it has opened the database
            except (asyncio.IncompleteReadError, TimeoutError) as err:
                await self._ended(child)
                raise WriterGone("the database writer process did not start") from err
            child.reader = asyncio.create_task(self._read_answers(child))
            self._child = child
            return child

    async def _ended(self, child: _Child) -> None:
        if child.proc.returncode is None:
            child.proc.kill()
        await child.proc.wait()
        if self._child is child:
            self._child = None

    async def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.proc.returncode is None:
            assert child.proc.stdin is not None
            child.proc.stdin.close()  # it ends at end of input, after the transactions in hand
            try:
                async with asyncio.timeout(10):
                    await child.proc.wait()
            except TimeoutError:
                child.proc.kill()
                await child.proc.wait()
        if child.reader is not None:
            await child.reader


# ---- the writer process ----------------------------------------------------------------


def _serve(url: str, requests: BinaryIO, answers: BinaryIO) -> None:
    import sqlalchemy as sa

    from acd.storage.store import sqlite_pragmas

    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    sa.event.listen(engine, "connect", sqlite_pragmas)
    with engine.connect():
        pass  # open the file (and fail here, not on the first lead, if it cannot)
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
    engine.dispose()


def main() -> None:
    # The server decides when this process ends (by closing its input): a Ctrl-C that
    # reaches the whole process group must not cut a transaction short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, not into the answers
    _serve(sys.argv[1], sys.stdin.buffer, answers)
