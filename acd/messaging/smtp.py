"""Adapter: SMTP ⇄ e-mail intake. An aiosmtpd server the company's mail server forwards
enquiries to, running in the server's own event loop (not aiosmtpd's threaded Controller:
the intake talks to the dispatcher, which belongs to this loop).

Replies: 250 once the contact is stored (durable, so the sending MTA may forget the
message), 550 for mail we refuse as malformed (it is quarantined and logged), 451 when our
database is away (the MTA retries later), 552 (by aiosmtpd) for a message over `max_size`.

Lines longer than RFC 5321's 1,000 octets are taken (up to `max_size`): relays that do not
wrap lines (HTML generators, some Exim setups) send them, and aiosmtpd's default answer, a
permanent "500 Line too long", bounced the customer's enquiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from acd.messaging.intake import EmailIntake
from acd.messaging.mail import Refused

log = logging.getLogger("acd.email")
STOP_GRACE = 5.0  # seconds a stopping listener waits for the sessions it has closed


class _Handler:
    def __init__(self, intake: EmailIntake) -> None:
        self.intake = intake

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = await self.intake.receive(raw, "smtp")
        except Exception:
            log.exception("e-mail intake failed; asking the sender to retry (451)")
            return "451 4.3.0 Temporary failure, please retry"
        if isinstance(result, Refused):
            return f"550 5.6.0 Message refused: {result.reason[:200]}"
        return f"250 2.0.0 OK {result.contact_id or 'kept'}"


class _SMTP(SMTP):
    def __init__(self, handler: _Handler, *, data_size_limit: int, **kwargs: Any) -> None:
        # aiosmtpd reads `line_length_limit` in its constructor (the stream limit) and again
        # for each DATA line, so it is set first. A line as long as the whole message allowed
        # (plus CRLF and a transparent dot) is the only bound that matters: past it, the
        # message is too large anyway.
        self.line_length_limit = max(SMTP.line_length_limit, data_size_limit + 3)
        super().__init__(handler, data_size_limit=data_size_limit, **kwargs)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("500 Line too long"):
            status = "552 5.3.4 Error: Too much mail data"  # only a line longer than max_size gets here
        if isinstance(status, str) and status.startswith("552"):
            # aiosmtpd refuses an oversized message itself; say so in our log as well
            peer = self.session.peer if self.session else None
            sender = self.envelope.mail_from if self.envelope else None
            log.warning(
                "e-mail refused (smtp): too large (over email.max_size); peer=%s from=%r",
                peer,
                sender,
                extra={"event": "email_refused"},
            )
        await super().push(status)


class SmtpListener:
    def __init__(self, intake: EmailIntake, host: str, port: int, max_size: int) -> None:
        self.intake = intake
        self.host = host
        self.port = port
        self.max_size = max_size
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[_SMTP] = weakref.WeakSet()

    async def start(self) -> None:
        handler = _Handler(self.intake)
        loop = asyncio.get_running_loop()

        def session() -> _SMTP:
            s = _SMTP(handler, data_size_limit=self.max_size, enable_SMTPUTF8=True, hostname="acd", loop=loop)
            self._sessions.add(s)
            return s

        self._server = await loop.create_server(session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SMTP listener on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # A client that stays connected (idle, or gone without QUIT) would otherwise hold
            # the stop until aiosmtpd's five-minute idle timeout; a mail not yet answered 250
            # is not lost: the sending server retries it.
            for s in list(self._sessions):
                if s.transport is not None:
                    s.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), STOP_GRACE)
            self._server = None
