"""Adapter wiring: e-mail intake (SMTP listener, IMAP poller), notifications, and the
dispatcher's side effects they react to. Built and started by the composition root when
the deployment asks for any of it; `stop()` undoes `start()`.

What triggers a notification:
- a new e-mail enquiry or a reply that opens a new contact: "received" to the customer
  (not to auto-replies), threaded under their message;
- a reply in a thread that is still open: "reply" to the owner's e-mail;
- an e-mail contact offered to a seller (`OfferContact`): "offered" to the seller's e-mail
  when `email.notify_seller` (the panel learns it from the same command);
- a web or e-mail contact assigned (committed by the dispatcher): "assigned" to the customer;
- `Notifier.callback_failed` for the telephony adapters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from acd.config import Deployment
from acd.core import events as ev
from acd.core.model import Channel, Contact, ContactStatus, Manager
from acd.dispatcher import Dispatcher, Persistence
from acd.messaging.imap import ImapPoller
from acd.messaging.intake import EmailIntake
from acd.messaging.mail import Mail
from acd.messaging.notify import Notifier, Sender, SmtpSender, TwilioSmsSender
from acd.messaging.smtp import SmtpListener
from acd.storage import Store

log = logging.getLogger("acd.messaging")
CommandHook = Callable[[ev.Command], None]


class CommitTap:
    """The dispatcher's store, seen from here: after each commit, the contacts it saved are
    handed to `on_saved` (the only place an assignment is visible once it is durable)."""

    def __init__(self, inner: Persistence, on_saved: Callable[[Sequence[Contact]], None]) -> None:
        self.inner = inner
        self.on_saved = on_saved

    async def apply(
        self,
        contacts: Sequence[Contact],
        managers: Sequence[Manager],
        decisions: Sequence[ev.Decision],
        transitions: Sequence[ev.Transition],
    ) -> None:
        await self.inner.apply(contacts, managers, decisions, transitions)
        try:
            self.on_saved(contacts)
        except Exception:
            log.exception("commit tap failed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Messaging:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        deployment: Callable[[], Deployment],
        clock: Callable[[], float],
        enrich: Callable[[], Callable[[Contact], Awaitable[Contact]] | None] = lambda: None,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        d = deployment()
        self.store = store
        self.dispatcher = dispatcher
        self.deployment = deployment
        self.clock = clock
        self.intake = EmailIntake(store, dispatcher, deployment, clock)
        self._enrich = enrich
        if senders is None:
            senders = {}
            if d.email.outbound is not None:
                senders["email"] = SmtpSender(d.email.outbound)
            if d.twilio is not None and d.twilio.sms_from:
                senders["sms"] = TwilioSmsSender(d.twilio)
        self.notifier = Notifier(store, deployment, clock, senders)
        self.smtp: SmtpListener | None = None
        self.imap: ImapPoller | None = None
        self.hooks: list[CommandHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._assigned: set[tuple[str, str]] = set()
        self.intake.listeners.append(self._on_mail)

    async def start(self) -> None:
        d = self.deployment()
        self.intake.enrich = self._enrich()
        await self.notifier.start()
        if d.email.enabled and d.email.smtp_listener is not None:
            lsn = d.email.smtp_listener
            self.smtp = SmtpListener(self.intake, lsn.host, lsn.port, d.email.max_size)
            await self.smtp.start()
        if d.email.enabled and d.email.imap is not None:
            self.imap = ImapPoller(self.intake, d.email.imap, d.email.max_size)
            self.imap.start()
        self.dispatcher.subscribe(self._on_command)
        self.dispatcher.store = CommitTap(self.dispatcher.store, self._on_saved)

    async def stop(self) -> None:
        if self.smtp is not None:
            await self.smtp.stop()
        if self.imap is not None:
            await self.imap.stop()
        for task in list(self._tasks):
            try:
                await asyncio.wait_for(task, 5)
            except Exception:
                log.exception("messaging task did not finish cleanly")
        await self.notifier.stop()

    async def settle(self) -> None:
        """Wait for the notifications this side has scheduled so far (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---- reactions ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("messaging task failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def _on_mail(self, kind: str, contact: Contact, mail: Mail) -> None:
        if kind in ("new", "reply") and not mail.auto_reply:
            subject = mail.subject or contact.payload.get("subject", "")
            await self.notifier.tell_customer(
                "received", contact, {"subject": subject}, contact.id, in_reply_to=mail.message_id
            )
        elif kind == "appended":
            owner = self.dispatcher.board.managers.get(contact.assigned_to or contact.offered_to or "")
            if owner is not None and owner.email:
                d = self.deployment()
                await self.notifier.request(
                    f"reply:{mail.message_id}",
                    "reply",
                    "email",
                    owner.email,
                    d.default_language,
                    {"customer": mail.sender_name or mail.sender, "email": mail.sender, "subject": mail.subject},
                    contact_id=contact.id,
                    manager_id=owner.id,
                    quiet=False,
                )

    def _on_command(self, cmd: ev.Command) -> None:
        match cmd:
            case ev.OfferContact(contact=c, manager=m, expires_at=expires) if c.channel is Channel.EMAIL:
                d = self.deployment()
                if d.email.notify_seller and m.email and "email" in self.notifier.senders:
                    minutes = max(1, round((expires - self.clock()) / 60))
                    fields = {
                        "customer": c.customer_name or c.email,
                        "email": c.email,
                        "subject": c.payload.get("subject", ""),
                        "minutes": minutes,
                        "manager": m.name,
                        "site": d.site_name,
                    }
                    key = f"offered:{c.id}:{m.id}:{int(expires)}"
                    self._spawn(
                        self.notifier.request(
                            key,
                            "offered",
                            "email",
                            m.email,
                            d.default_language,
                            fields,
                            contact_id=c.id,
                            manager_id=m.id,
                            quiet=False,
                        )
                    )
        for hook in self.hooks:
            hook(cmd)

    def _on_saved(self, contacts: Sequence[Contact]) -> None:
        for c in contacts:
            if c.status is not ContactStatus.ASSIGNED or c.assigned_to is None or c.channel.is_voice:
                continue
            pair = (c.id, c.assigned_to)
            if pair in self._assigned:
                continue
            self._assigned.add(pair)
            manager = self.dispatcher.board.managers.get(c.assigned_to)
            name = manager.name if manager and manager.name else c.assigned_to
            self._spawn(
                self.notifier.tell_customer(
                    "assigned",
                    c,
                    {"manager": name, "subject": c.payload.get("subject", "")},
                    f"{c.id}:{c.assigned_to}",
                    in_reply_to=str(c.payload.get("message_id") or "") or None,
                )
            )
