"""Adapter: notifications to customers and managers, by e-mail (SMTP) or SMS (Twilio REST).

    notifier.request(event_key, template, channel, recipient, language, fields)

Each request is one row in `notifications`, unique per `event_key`: asking twice for the
same event is a no-op, so nothing is ever sent twice for one event. A worker task sends what
is due: a failure is recorded and retried with exponential back-off (`retry.backoff`,
doubling, at most `retry.max_backoff`) up to `retry.attempts`; customer messages wait out the
quiet hours (site time), managers' do not. The row is marked `sending` before the peer is
called: if the server stops mid-send the outcome is unknown, and on restart such a row is
marked failed rather than sent again (at most once beats twice).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import string
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from acd.config import Deployment
from acd.config.messaging import OutboundSettings, TwilioSettings
from acd.core.model import Contact
from acd.ids import new_id
from acd.messaging.mail import bare_subject
from acd.runtime import cancel_and_wait, outbox_rounds
from acd.storage import Store
from acd.storage.messaging import MessagingStore, Notification

log = logging.getLogger("acd.notify")
SEND_TIMEOUT = 30.0


class SendError(Exception):
    """The peer refused or could not be reached; the attempt is retried later."""


class CallbackHooks(Protocol):
    """What `Notifier.follow_callbacks` hooks into (`acd.telephony.callbacks.Callbacks`)."""

    requested: Callable[[Contact, str], Awaitable[object]] | None
    customer_missed: Callable[[str, int], Awaitable[object]] | None
    customer_given_up: Callable[[str, int], Awaitable[object]] | None


class Sender(Protocol):
    async def send(self, n: Notification) -> str:
        """Deliver; return the peer's id for it (Message-ID, Twilio SID). Raise on failure."""
        ...


# ---- pure helpers -------------------------------------------------------------------------


def quiet_until(now: float, tz: str, quiet: tuple[time, time] | None) -> float | None:
    """When the quiet period around `now` ends (POSIX seconds), or None outside it.

    `quiet=(21:00, 09:00)` crosses midnight: at 23:30 or at 06:00 local time the answer is
    the next 09:00; at 12:00 it is None.
    """
    if quiet is None:
        return None
    start, end = quiet
    local = datetime.fromtimestamp(now, ZoneInfo(tz))
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.timestamp()


def render(text: str, fields: Mapping[str, Any]) -> str:
    """Fill `{name}` fields; a field nobody supplied stays empty rather than failing a send."""

    class _Blank(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return ""

    return string.Formatter().vformat(text, (), _Blank(fields))


def sms_number(phone: str) -> str:
    """A number as written by a customer, in the E.164 form Twilio takes: `+7 (916) 555-00-00`
    → `+79165550000`. One without a leading `+` is left as it is (its country is unknown)."""
    phone = phone.strip()
    return "+" + "".join(ch for ch in phone if ch.isdigit()) if phone.startswith("+") else phone


def backoff(attempts: int, first: float, most: float) -> float:
    """Seconds before the next try after `attempts` failures: first, 2×first, 4×first... ≤ most."""
    return float(min(most, first * 2 ** max(0, attempts - 1)))


# ---- senders ------------------------------------------------------------------------------


class SmtpSender:
    """Through the configured relay, with smtplib in a worker thread (it blocks)."""

    def __init__(self, settings: OutboundSettings, on_sent: Callable[[Notification, str], Any] | None = None) -> None:
        self.settings = settings
        self.on_sent = on_sent

    async def send(self, n: Notification) -> str:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.from_address
        msg["To"] = n.recipient
        msg["Subject"] = n.subject
        domain = parseaddr(s.from_address)[1].partition("@")[2] or "acd.local"
        msg_id = make_msgid(idstring=n.id[:12], domain=domain)
        msg["Message-ID"] = msg_id
        if n.in_reply_to:
            msg["In-Reply-To"] = n.in_reply_to
            msg["References"] = n.in_reply_to
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders must not answer it
        msg["Content-Language"] = n.language
        msg.set_content(n.body)
        try:
            async with asyncio.timeout(s.timeout + 5):  # not wait_for: it can lose a cancellation
                await asyncio.to_thread(self._deliver, msg)
        except (smtplib.SMTPException, OSError, TimeoutError) as err:
            raise SendError(f"SMTP {s.host}:{s.port}: {type(err).__name__}: {err}") from err
        return msg_id

    def _deliver(self, msg: EmailMessage) -> None:
        s = self.settings
        cls = smtplib.SMTP_SSL if s.ssl else smtplib.SMTP
        with cls(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(msg)


class TwilioSmsSender:
    """Twilio's Messages API through the twilio library's async client. `api_base` points it
    at another host (a local stand-in in tests)."""

    def __init__(self, settings: TwilioSettings) -> None:
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        self.settings = settings
        self.client = Client(
            settings.account_sid,
            settings.auth_token or "",
            http_client=AsyncTwilioHttpClient(timeout=SEND_TIMEOUT),
        )
        self.client.api.base_url = settings.api_base

    async def send(self, n: Notification) -> str:
        from twilio.base.exceptions import TwilioException

        if not self.settings.sms_from:
            raise SendError("twilio.sms_from is not set")
        try:
            message = await self.client.messages.create_async(
                to=sms_number(n.recipient), from_=self.settings.sms_from, body=n.body
            )
        except (TwilioException, OSError, TimeoutError) as err:
            raise SendError(f"Twilio SMS: {type(err).__name__}: {err}") from err
        return str(message.sid)

    async def close(self) -> None:
        http = self.client.http_client
        close = getattr(http, "close", None)
        if close is not None:
            await close()


# ---- the notifier -------------------------------------------------------------------------


class Notifier:
    def __init__(
        self,
        store: Store,
        deployment: Callable[[], Deployment],
        clock: Callable[[], float],
        senders: Mapping[str, Sender],
    ) -> None:
        self.store = MessagingStore(store)
        self.deployment = deployment
        self.clock = clock
        self.senders = dict(senders)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # one round at a time: a row is never attempted twice at once
        self.sent = 0

    # ---- asking -----------------------------------------------------------------------

    async def request(
        self,
        event_key: str,
        template: str,
        channel: str,
        recipient: str,
        language: str,
        fields: Mapping[str, Any],
        *,
        contact_id: str | None = None,
        manager_id: str | None = None,
        in_reply_to: str | None = None,
        quiet: bool = True,
    ) -> bool:
        """Queue one message; False when this `event_key` was queued before (nothing changes)."""
        d = self.deployment()
        t = d.notifications.templates[template]
        lang = language if language in t.body else d.default_language
        # a customer's subject is quoted without its "Re: Fwd:" (ours would stack before them)
        subject = render(t.subject.get(lang, ""), {**fields, "subject": bare_subject(str(fields.get("subject", "")))})
        n = Notification(
            id=new_id(),
            event_key=event_key,
            template=template,
            channel=channel,
            recipient=recipient,
            language=lang,
            subject=subject,
            body=render(t.body[lang], fields),
            created_at=self.clock(),
            contact_id=contact_id,
            manager_id=manager_id,
            in_reply_to=in_reply_to,
            quiet=quiet,
        )
        added = await self.store.add_notification(n)
        if added:
            self._wake.set()
        return added

    async def tell_customer(
        self, template: str, contact: Contact, fields: Mapping[str, Any], key: str, in_reply_to: str | None = None
    ) -> bool:
        """Tell a contact's customer by the first configured channel they can be reached on."""
        d = self.deployment()
        if not d.notifications.enabled:
            return False
        for channel in d.notifications.customer.get(template, ()):
            recipient = contact.email if channel == "email" else contact.phone
            if recipient and channel in self.senders:
                all_fields = {
                    "customer": contact.customer_name,
                    "site": d.site_name,
                    "contact_id": contact.id,
                    **fields,
                }
                return await self.request(
                    f"{template}:{key}",
                    template,
                    channel,
                    recipient,
                    contact.language or d.default_language,
                    all_fields,
                    contact_id=contact.id,
                    in_reply_to=in_reply_to if channel == "email" else None,
                )
        return False

    async def callback_requested(self, contact: Contact, callback_id: str) -> bool:
        """ "We got your request, we will call you": once per callback request."""
        return await self.tell_customer("callback_requested", contact, {"phone": contact.phone}, callback_id)

    async def callback_failed(self, contact: Contact, attempt: int) -> bool:
        """ "We tried to call you back": for the telephony adapters, once per failed attempt."""
        return await self.tell_customer("callback_failed", contact, {"phone": contact.phone}, f"{contact.id}:{attempt}")

    async def callback_given_up(self, contact: Contact, attempts: int) -> bool:
        """ "We could not reach you": instead of "we tried" after the last attempt."""
        return await self.tell_customer(
            "callback_given_up", contact, {"phone": contact.phone}, f"{contact.id}:{attempts}"
        )

    def follow_callbacks(self, callbacks: CallbackHooks, contact: Callable[[str], Awaitable[Contact | None]]) -> None:
        """Tell customers how their callback goes, whichever back end rings (Asterisk or Twilio):
        the request is acknowledged, and each attempt that did not reach them is reported.
        `contact` finds a contact by id (the store)."""

        async def requested(c: Contact, callback_id: str) -> None:
            await self.callback_requested(c, callback_id)

        async def missed(contact_id: str, attempt: int) -> None:
            found = await contact(contact_id)
            if found is not None:
                await self.callback_failed(found, attempt)

        async def given_up(contact_id: str, attempts: int) -> None:
            found = await contact(contact_id)
            if found is not None:
                await self.callback_given_up(found, attempts)

        callbacks.requested = requested
        callbacks.customer_missed = missed
        callbacks.customer_given_up = given_up

    # ---- sending ----------------------------------------------------------------------

    async def start(self) -> None:
        for n in await self.store.list_notifications(limit=1000):
            if n.status == "sending":
                n.status, n.last_error = "failed", "outcome unknown: the server stopped while sending; not resent"
                await self.store.update_notification(n, None)
                log.warning("notification %s (%s) left unsent after a stop mid-send", n.id, n.event_key)
        self._task = asyncio.create_task(self._run(), name="acd-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                await close()

    async def _run(self) -> None:
        await outbox_rounds(self.send_due, self.store.next_due, self._wake, self.clock, log, "notification")

    async def send_due(self) -> int:
        """Send everything due now; return how many went out."""
        async with self._sending:
            done = 0
            for n in await self.store.due_notifications(self.clock()):
                done += await self._attempt(n)
            return done

    async def _attempt(self, n: Notification) -> int:
        d = self.deployment()
        settings = d.notifications
        now = self.clock()
        if n.quiet and (until := quiet_until(now, d.tz, settings.quiet_hours)) is not None:
            n.next_at = until
            await self.store.update_notification(n, None)
            log.info("notification %s held for quiet hours until %s", n.event_key, datetime.fromtimestamp(until))
            return 0
        sender = self.senders.get(n.channel)
        n.attempts += 1
        n.status = "sending"
        await self.store.update_notification(n, None)
        try:
            if sender is None:
                raise SendError(f"no {n.channel} sender configured")
            n.external_id = await sender.send(n)
        except Exception as err:  # any failure of one send is that send's, not the worker's
            error = str(err) if isinstance(err, SendError) else f"{type(err).__name__}: {err}"
            n.last_error = error
            if n.attempts >= settings.attempts:
                n.status, n.next_at = "failed", None
                log.error("notification %s gave up after %d attempts: %s", n.event_key, n.attempts, error)
            else:
                n.status = "pending"
                n.next_at = now + backoff(n.attempts, settings.backoff, settings.max_backoff)
                log.warning("notification %s failed (attempt %d): %s; retrying", n.event_key, n.attempts, error)
            await self.store.update_notification(n, (now, False, error))
            return 0
        n.status, n.sent_at, n.next_at, n.last_error = "sent", self.clock(), None, None
        await self.store.update_notification(n, (now, True, None))
        if n.channel == "email" and n.external_id:
            # what we wrote to the customer is their thread too: a reply that lost its
            # In-Reply-To finds it by their address and its subject (a seller's notice is not)
            customer = n.recipient if n.manager_id is None else None
            await self.store.record_message(
                n.external_id, n.contact_id, "out", False, "", n.subject, now, address=customer
            )
        self.sent += 1
        log.info("notification %s sent by %s to %s", n.event_key, n.channel, n.recipient)
        return 1


def manager_address(name: str, address: str) -> str:
    return formataddr((name, address)) if name else address
