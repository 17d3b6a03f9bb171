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
transaction in flight (it did not commit, and nobody was told it did) and is started again
for the next one. It ends when its input closes, so it also ends when the server is killed.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")
_LENGTH = struct.Struct("!I")
START_TIMEOUT_S = 60.0


class WriterGone(Exception):
    """The writer process ended during the transaction: it did not commit."""


class WriterProcess:
    def __init__(self, url: str) -> None:
        self._url = url
        self._proc: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        async with self._turn:
            await self._started()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` in one transaction, committed when it returns."""
        request = pickle.dumps((work, args), pickle.HIGHEST_PROTOCOL)
        # shielded: a caller that gives up must not leave an answer unread in the pipe
        ok, result = await asyncio.shield(self._exchange(request))
        if not ok:
            raise result
        return result  # type: ignore[no-any-return]

    async def _exchange(self, request: bytes) -> tuple[bool, Any]:
        async with self._turn:
            proc = await self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(_LENGTH.pack(len(request)) + request)
                await proc.stdin.drain()
                size = _LENGTH.unpack(await proc.stdout.readexactly(_LENGTH.size))[0]
                return pickle.loads(await proc.stdout.readexactly(size))  # type: ignore[no-any-return]
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                await self._ended(proc)
                raise WriterGone("the database writer process ended; the transaction did not commit") from err

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from acd.storage.writer import main; main()",
            self._url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await proc.stdout.readexactly(1)  # it has opened the database
        except (asyncio.IncompleteReadError, TimeoutError) as err:
            await self._ended(proc)
            raise WriterGone("the database writer process did not start") from err
        return proc

    async def _ended(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        self._proc = None

    async def close(self) -> None:
        async with self._turn:
            proc, self._proc = self._proc, None
            if proc is None or proc.returncode is not None:
                return
            assert proc.stdin is not None
            proc.stdin.close()  # it ends at end of input, after the transaction in hand
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


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
