"""Adapter: an incoming e-mail becomes a contact on the e-mail channel (or joins its thread).

Both ways in (the SMTP listener and the IMAP poller) hand raw bytes to `EmailIntake.receive`,
which decides, in this order:

1. malformed (see `acd.messaging.mail`), or holding a value the database refuses:
   quarantined, logged with the reason, `Refused`;
2. a Message-ID seen before: the same contact comes back, nothing new is queued;
3. a reply (In-Reply-To / References name a message of ours) whose contact is still open:
   the message joins that contact's thread and its owner is told. A letter that names no
   message of ours (older Outlook setups, some mobile apps and a new letter quoting our
   subject drop those headers) is a reply all the same when its sender has a thread with us
   whose subject is the same without "Re:"/"Fwd:" and whose last message is within
   `email.subject_window` (`_thread_by_subject`); never by a subject too short or generic to
   tell threads apart ("Вопрос", "(без темы)": `acd.messaging.mail.subject_key`), nor for
   automatic mail or a letter written for someone else (a Reply-To another address: a form
   mailer's leads all have one subject);
4. automatic mail (an out-of-office reply, a bounce, a read receipt, bulk mail: see
   `acd.messaging.mail`) is never answered; when it belongs to a thread (by In-Reply-To /
   References, or, for a bounce, by the Message-ID of the letter it returns) it is recorded
   on that contact, open or closed, and nobody is offered anything; a bounce or a receipt
   in no thread is kept in the quarantine with the reason, for staff to see. Any other
   automatic letter in no thread still becomes a contact (unanswered): a website's form
   mailer may say `Precedence: bulk`, and a lead must not be lost for it;
5. a reply whose contact is closed: a new contact with the thread's owner first in
   `preferred` (the policy's first step, so the owner gets it if they are there at all),
   keeping the earlier answers;
6. otherwise a first-time enquiry: criteria from keywords (`email.keywords`) and the
   attachments' names over defaults.

The CRM's `enrich` recognises the sender before the contact is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from acd.config import Deployment
from acd.core import events as ev
from acd.core.intake import derived
from acd.core.model import Channel, Contact
from acd.dispatcher import Dispatcher
from acd.ids import new_id
from acd.messaging.mail import Mail, Refused, infer_criteria, read_mail, subject_key, too_large
from acd.storage import Refused as StoreRefused
from acd.storage import Store
from acd.storage.messaging import MessagingStore

log = logging.getLogger("acd.email")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
# Senders that write for others (a site's form mailer, a CRM's robot): one subject, many customers
_NO_REPLY = re.compile(r"^(no-?reply|do-?not-?reply|mailer|robot|notifications?|wordpress)[-.+_@]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Received:
    """What became of a message: `created` is False for a duplicate, a thread append or
    automatic mail; `contact_id` is None only for automatic mail kept in the quarantine."""

    contact_id: str | None
    created: bool
    kind: str  # new | reply | appended | automatic | duplicate
    owner: str | None = None


class EmailIntake:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        deployment: Callable[[], Deployment],
        clock: Callable[[], float],
        enrich: Callable[[Contact], Awaitable[Contact]] | None = None,
    ) -> None:
        self.store = store
        self.messages = MessagingStore(store)
        self.dispatcher = dispatcher
        self.deployment = deployment
        self.clock = clock
        self.enrich = enrich
        # Called after a contact is stored or a reply appended: (kind, contact, mail). The
        # notifier acknowledges customers and tells owners; it must not raise.
        self.listeners: list[Callable[[str, Contact, Mail], Awaitable[None]]] = []

    async def receive(self, raw: bytes, source: str) -> Received | Refused:
        settings = self.deployment().email
        mail = read_mail(raw, settings.max_size)
        if isinstance(mail, Refused):
            await self._quarantine(mail, raw, source, settings.max_size)
            return mail
        try:
            return await self._take_in(mail, raw, source)
        except StoreRefused as err:
            # Retrying (the next IMAP scan, the sender's server after a 451) would meet the
            # same refusal for ever: the message goes where malformed ones go.
            refused = Refused(
                f"the database cannot store it ({err})", mail.message_id, mail.sender, mail.subject, mail.size
            )
            await self._quarantine(refused, raw, source, settings.max_size)
            return refused

    async def _take_in(self, mail: Mail, raw: bytes, source: str) -> Received:
        known = await self.messages.thread_contact([mail.message_id])
        if known is not None:
            log.info("duplicate e-mail %s from %s: contact %s already has it", mail.message_id, mail.sender, known)
            return Received(known, False, "duplicate")
        thread = await self._thread_of(mail)
        if thread is None:
            thread = await self._thread_by_subject(mail)
        if mail.auto_reply and (thread is not None or mail.report):
            return await self._automatic(mail, thread, raw, source)
        if thread is not None and thread.status.is_open:
            return await self._append(mail, thread)
        return await self._create(mail, thread, source)

    async def refuse_too_large(self, head: bytes, size: int, source: str) -> Refused:
        """A message known to be over `email.max_size` before it was fetched: quarantine its headers."""
        refused = too_large(head, size, self.deployment().email.max_size)
        await self._quarantine(refused, head, source, len(head))  # keep the headers
        return refused

    # ---- the four outcomes ------------------------------------------------------------

    async def _append(self, mail: Mail, thread: Contact) -> Received:
        await self.messages.record_message(
            mail.message_id, thread.id, "in", False, mail.sender, mail.subject, self.clock()
        )
        owner = thread.assigned_to or thread.offered_to
        log.info(
            "e-mail reply %s joins open contact %s (%s)",
            mail.message_id,
            thread.id,
            f"owner {owner}" if owner else "still waiting",
            extra={"contact_id": thread.id, "manager_id": owner, "event": "email_reply"},
        )
        await self._tell("appended", thread, mail)
        return Received(thread.id, False, "appended", owner)

    async def _automatic(self, mail: Mail, thread: Contact | None, raw: bytes, source: str) -> Received:
        """A machine's letter: on its thread when it has one, else (a bounce, a receipt) in
        the quarantine; never a contact, never an offer, never answered (so no listener
        hears of it)."""
        cid = thread.id if thread is not None else None
        if not await self.messages.record_message(
            mail.message_id, cid, "in", False, mail.sender, mail.subject, self.clock()
        ):
            return Received(cid, False, "duplicate")  # delivered before (kept in the quarantine), or twice at once
        if thread is not None:
            log.info(
                "automatic e-mail %s (%s) recorded on contact %s; nobody is offered it",
                mail.message_id,
                mail.automatic,
                thread.id,
                extra={"contact_id": thread.id, "event": "email_automatic"},
            )
            return Received(thread.id, False, "automatic", thread.assigned_to or thread.offered_to)
        reason = f"automatic mail ({mail.automatic}), not in any thread: kept, not offered, not answered"
        refused = Refused(reason, mail.message_id, mail.sender, mail.subject, mail.size)
        await self._quarantine(refused, raw, source, self.deployment().email.max_size, "kept in the quarantine")
        return Received(None, False, "automatic")

    async def _create(self, mail: Mail, thread: Contact | None, source: str) -> Received:
        d = self.deployment()
        policy = self.dispatcher.board.policy
        criteria = {c.name: c.default for c in d.criteria if c.default is not None}
        if thread is not None:
            criteria.update(thread.criteria)
        criteria.update(infer_criteria(_words_of(mail), d.email.keywords))
        skills, bonus, team = derived(criteria, policy)
        now = self.clock()
        contact = Contact(
            id=new_id(),
            channel=Channel.EMAIL,
            arrived_at=now,
            step_since=now,
            criteria=criteria,
            customer_name=mail.sender_name,
            email=mail.sender,
            priority=bonus,
            required_skills=skills,
            team=team,
            language=_language(mail, d.languages),
            payload={
                "subject": mail.subject,
                "text": mail.text,
                "message_id": mail.message_id,
                "source": source,
                **({"attachments": list(mail.attachments)} if mail.attachments else {}),
                **({"thread_of": thread.id} if thread is not None else {}),
            },
        )
        if self.enrich is not None:
            contact = await self.enrich(contact)
        owner = thread.assigned_to if thread is not None else None
        if owner is not None:
            contact = replace(contact, preferred=(owner, *(p for p in contact.preferred if p != owner)))
        stored, created = await self.store.create_contact(contact, f"email:{mail.message_id}")
        await self.messages.record_message(
            mail.message_id, stored.id, "in", thread is None, mail.sender, mail.subject, now
        )
        kind = "reply" if thread is not None else "new"
        if not created:
            log.info("duplicate e-mail %s: contact %s", mail.message_id, stored.id)
            return Received(stored.id, False, "duplicate")
        self.dispatcher.post(ev.ContactArrived(stored))
        log.info(
            "e-mail %s from %s became contact %s (%s%s)",
            mail.message_id,
            mail.sender,
            stored.id,
            kind,
            f", thread owner {owner} first" if owner else "",
            extra={"contact_id": stored.id, "event": "email_in"},
        )
        await self._tell(kind, stored, mail)
        return Received(stored.id, True, kind, owner)

    async def _quarantine(
        self, refused: Refused, raw: bytes, source: str, max_size: int, what: str = "refused and quarantined"
    ) -> None:
        log.warning(
            "e-mail %s (%s): %s; from=%r subject=%r message-id=%s size=%d",
            what,
            source,
            refused.reason,
            refused.sender,
            refused.subject[:100],
            refused.message_id,
            refused.size,
            extra={"event": "email_quarantined"},
        )
        try:
            await self.messages.quarantine(
                self.clock(),
                source,
                refused.reason,
                refused.message_id,
                refused.sender,
                refused.subject,
                refused.size,
                raw if len(raw) <= max_size else None,
            )
        except Exception:
            log.exception("could not store the quarantined message")

    # ---- helpers --------------------------------------------------------------------

    async def _thread_of(self, mail: Mail) -> Contact | None:
        cid = await self.messages.thread_contact(list(mail.in_reply_to))
        if cid is None:
            return None
        return self.dispatcher.board.contacts.get(cid) or await self.store.get_contact(cid)

    async def _thread_by_subject(self, mail: Mail) -> Contact | None:
        """The contact of the sender's thread with this letter's subject (without "Re:"), for
        a letter that names no message of ours; None when there is none or it may not be."""
        window = self.deployment().email.subject_window
        key = subject_key(mail.subject)
        if window <= 0 or key is None or mail.auto_reply or mail.reply_to or _NO_REPLY.match(mail.sender):
            return None
        cid = await self.messages.thread_by_subject(mail.sender, key, self.clock() - window)
        if cid is None:
            return None
        thread = self.dispatcher.board.contacts.get(cid) or await self.store.get_contact(cid)
        if thread is not None:
            log.info(
                "e-mail %s from %s names no message of ours; by its subject %r it is a reply on contact %s",
                mail.message_id,
                mail.sender,
                key[:100],
                cid,
                extra={"contact_id": cid, "event": "email_thread_by_subject"},
            )
        return thread

    async def _tell(self, kind: str, contact: Contact, mail: Mail) -> None:
        for listener in self.listeners:
            try:
                await listener(kind, contact, mail)
            except Exception:
                log.exception("e-mail listener failed on %s", contact.id)


def _words_of(mail: Mail) -> str:
    """What keywords and the language are read from: the subject, the text, and the names of
    the attachments (a letter may be only «Заявка на продление лицензии.pdf»)."""
    names = (name.replace("_", " ") for name in mail.attachments)  # "Заявка_на_продление.pdf"
    return "\n".join((mail.subject, mail.text, *names))


def _language(mail: Mail, languages: tuple[str, ...]) -> str:
    """The Content-Language when it is a site language, else Russian for Cyrillic text (when
    the site speaks it), else English when offered, else the site default."""
    if mail.language in languages:
        return mail.language
    sample = "\n".join((mail.subject, mail.text[:2000], *mail.attachments))
    cyr, lat = len(_CYRILLIC.findall(sample)), len(_LATIN.findall(sample))
    if cyr > lat and "ru" in languages:
        return "ru"
    if lat > cyr and "en" in languages:
        return "en"
    return languages[0]
