"""Test fixtures for e-mail: a real SMTP sink on 127.0.0.1 (aiosmtpd, port 0) that records
what it was sent (the `sink` fixture), a deployment with e-mail and notifications switched on,
and a server running it (the `mailed` fixture, on each storage backend)."""

from __future__ import annotations

import asyncio
import smtplib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from api_fixtures import Running, example_deployment, start, stop
from storage_fixtures import Backend

from acd.api.messaging import MESSAGING
from acd.config import Deployment
from acd.config.messaging import EmailSettings, NotificationSettings, OutboundSettings, SmtpListenerSettings
from acd.messaging.service import Messaging

KEYWORDS = {
    "purpose": {"renewal": ("лиценз", "продл", "renew", "licence"), "training": ("обучен", "training", "курс")},
    "temperature": {"hot": ("срочно", "urgent", "сегодня")},
}


@dataclass
class Sink:
    """An SMTP server that accepts everything (or answers `fail_next` with a 451 first)."""

    server: asyncio.Server | None = None
    port: int = 0
    received: asyncio.Queue[EmailMessage] = field(default_factory=asyncio.Queue)
    fail_next: int = 0
    refused: int = 0
    sessions: weakref.WeakSet[SMTP] = field(default_factory=weakref.WeakSet)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.refused += 1
            return "451 4.3.0 try again later"
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content or b"")
        assert isinstance(msg, EmailMessage)
        self.received.put_nowait(msg)
        return "250 OK"

    async def next(self) -> EmailMessage:
        async with asyncio.timeout(5):
            return await self.received.get()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            s = SMTP(self, loop=loop)
            self.sessions.add(s)
            return s

        self.server = await loop.create_server(session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for s in list(self.sessions):  # an idle session would hold wait_closed for 5 minutes
                if s.transport is not None:
                    s.transport.close()
            async with asyncio.timeout(5):
                await self.server.wait_closed()


def mail_deployment(
    sink_port: int, *, smtp_listener: bool = True, max_size: int = 200_000, **notify: object
) -> Deployment:
    d = example_deployment()
    return replace(
        d,
        email=EmailSettings(
            enabled=True,
            smtp_listener=SmtpListenerSettings("127.0.0.1", 0) if smtp_listener else None,
            outbound=OutboundSettings("Ромашка <sales@romashka.test>", "127.0.0.1", sink_port, timeout=5),
            max_size=max_size,
            keywords=KEYWORDS,
        ),
        notifications=replace(
            NotificationSettings(), **{"enabled": True, "quiet_hours": None, "backoff": 0.05, **notify}
        ),
    )


def enquiry(
    message_id: str,
    sender: str = "ivan@client.test",
    subject: str = "Вопрос",
    text: str = "Добрый день",
    name: str = "Иван Петров",
    in_reply_to: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "sales@romashka.test"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    return msg.as_bytes()


def smtp_send(port: int, raw: bytes, sender: str = "ivan@client.test") -> dict[str, tuple[int, bytes]]:
    """Deliver like a mail server would (blocking: run it with asyncio.to_thread)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        return smtp.sendmail(sender, ["sales@romashka.test"], raw)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def mailed(backend: Backend, sink: Sink) -> AsyncIterator[Running]:
    """A server on `mail_deployment`: SMTP in, notifications out to `sink`."""
    r = await start(backend, mail_deployment(sink.port))
    try:
        yield r
    finally:
        await stop(r)


def messaging(r: Running) -> Messaging:
    return r.server.app[MESSAGING]
