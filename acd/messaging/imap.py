"""Adapter: IMAP mailbox ⇄ e-mail intake (aioimaplib).

Polls one mailbox for unseen messages; where the server has IDLE (RFC 2177) it waits for
the server's push instead of sleeping, and falls back to polling every `poll_interval`
otherwise. A message is marked \\Seen only after the intake stored it (or quarantined it), so
a crash in between means one redelivery, which the Message-ID dedupe absorbs. The size is
read first (RFC822.SIZE): an oversized message is quarantined from its headers and never
downloaded. A lost connection or a refused login is logged and retried with back-off; the
poller never dies of a bad message, and a message that cannot be stored (a bug, a database
limit) stays unseen, is tried again after the back-off, and does not hold up the ones
behind it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable

import aioimaplib

from acd.config.messaging import ImapSettings
from acd.messaging.intake import EmailIntake

log = logging.getLogger("acd.email")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
MAX_BACKOFF = 300.0


class ImapError(Exception):
    """The IMAP server answered a command with NO or BAD."""


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(line for line in response.lines if isinstance(line, bytes))[:200]
        raise ImapError(f"{what}: {response.result} {detail.decode(errors='replace')}")
    return response


class ImapPoller:
    def __init__(self, intake: EmailIntake, settings: ImapSettings, max_size: int, timeout: float = 30.0) -> None:
        self.intake = intake
        self.settings = settings
        self.max_size = max_size
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._client: aioimaplib.IMAP4 | None = None
        self.rounds = 0  # completed mailbox scans, for tests and metrics
        self.scanned = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acd-imap")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.logout(), 2)
            except Exception:
                pass

    async def _run(self) -> None:
        delay = 1.0
        s = self.settings
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("IMAP %s@%s:%d: %s; retrying in %.0f s", s.username, s.host, s.port, err, delay)
                await asyncio.sleep(delay)  # back-off between reconnects, not a wait for progress
                delay = min(delay * 2, MAX_BACKOFF)
            else:
                delay = 1.0

    async def _session(self) -> None:
        s = self.settings
        if s.ssl:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                s.host, s.port, timeout=self.timeout, ssl_context=ssl.create_default_context()
            )
        else:
            client = aioimaplib.IMAP4(s.host, s.port, timeout=self.timeout)
        self._client = client
        await client.wait_hello_from_server()
        if s.password is None:
            raise ImapError(f"no password: set the environment variable {s.password_env}")
        _ok(await client.login(s.username, s.password), "login")
        _ok(await client.select(s.mailbox), f"select {s.mailbox}")
        idle = s.idle and client.has_capability("IDLE")
        log.info("IMAP connected to %s:%d/%s (%s)", s.host, s.port, s.mailbox, "IDLE" if idle else "polling")
        while True:
            await self._scan(client)
            self.rounds += 1
            self.scanned.set()
            if idle:
                waiting = await client.idle_start(timeout=s.poll_interval)
                push = await client.wait_server_push(timeout=s.poll_interval + 30)
                client.idle_done()
                async with asyncio.timeout(self.timeout):  # not wait_for: it can lose a cancellation
                    await waiting
                log.debug("IMAP push: %r", push)
            else:
                await asyncio.sleep(s.poll_interval)  # the poll period itself

    async def _scan(self, client: aioimaplib.IMAP4) -> None:
        found = _ok(await client.uid_search("UNSEEN", charset=None), "search")
        uids = [u for line in found.lines[:1] for u in line.split() if u.isdigit()]
        failed: list[str] = []
        for uid in (u.decode() for u in uids):
            sized = _ok(await client.uid("fetch", uid, "(RFC822.SIZE)"), f"fetch size {uid}")
            m = next((_SIZE.search(bytes(line)) for line in sized.lines if _SIZE.search(bytes(line))), None)
            size = int(m.group(1)) if m else 0
            if size > self.max_size:
                head = _literal(_ok(await client.uid("fetch", uid, "(BODY.PEEK[HEADER])"), f"fetch header {uid}"))
                taking: Awaitable[object] = self.intake.refuse_too_large(head, size, "imap")
            else:
                raw = _literal(_ok(await client.uid("fetch", uid, "(BODY.PEEK[])"), f"fetch {uid}"))
                taking = self.intake.receive(raw, "imap")
            try:
                await taking
            except Exception:
                # Left unseen for the next scan, and the messages behind it still go in: one
                # that cannot be stored (a bug, a database limit) must not hold up the mailbox.
                log.exception("IMAP message %s could not be taken in; it stays unseen and is tried again", uid)
                failed.append(uid)
                continue
            _ok(await client.uid("store", uid, "+FLAGS.SILENT", r"(\Seen)"), f"store {uid}")
        if failed:
            raise ImapError(f"{len(failed)} message(s) not taken in (UID {', '.join(failed)}); retrying after a pause")


def _literal(response: aioimaplib.Response) -> bytes:
    """The message bytes of a FETCH answer (aioimaplib hands literals over as bytearray)."""
    literals = [line for line in response.lines if isinstance(line, bytearray)]
    return bytes(max(literals, key=len)) if literals else b""
