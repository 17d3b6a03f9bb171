"""Storage: e-mail threads, quarantined mail, customer/manager notifications and Twilio calls.

The tables live on the shared `metadata` (built by migration `0005` on the `messaging`
branch); the repository writes through the store's connections and its SQLite writer queue.

- `email_messages`: every Message-ID we received or sent, and the contact it belongs to, so a
  reply (In-Reply-To / References) finds its thread and its owner; with the customer's address
  and the subject's `subject_key` (migration 0017), so a reply whose mail program dropped those
  headers still finds it (`thread_by_subject`);
- `email_quarantine`: mail refused as malformed, and automatic mail (out-of-office replies,
  bounces) that belongs to no thread, with the reason, for an administrator;
- `notifications`: one row per thing to tell someone, unique per `event_key` (so an event is
  never notified twice), with its attempts in `notification_attempts`;
- `twilio_calls`: a Twilio CallSid and the contact it became.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acd.messaging.mail import subject_key
from acd.storage import tables as t
from acd.storage.store import Store, scrub_rows

__all__ = [
    "MessagingStore",
    "Notification",
    "email_messages",
    "email_quarantine",
    "notification_attempts",
    "notifications",
    "twilio_calls",
]


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


email_messages = sa.Table(
    "email_messages",
    t.metadata,
    sa.Column("message_id", sa.String(), primary_key=True),
    sa.Column("contact_id", sa.String(), nullable=True),
    sa.Column("direction", sa.String(), nullable=False),  # in | out
    sa.Column("first_time", sa.Boolean(), nullable=False),  # a new enquiry, not a reply in a thread
    sa.Column("sender", sa.String(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("at", sa.Double(), nullable=False),
    # The customer's address (lower-cased): a letter's sender, or the recipient of one we sent
    # when the sender says so; NULL when unknown (and in rows older than migration 0017)
    sa.Column("address", sa.String(), nullable=True),
    # `acd.messaging.mail.subject_key`: NULL when the subject is too generic to thread by
    sa.Column("subject_key", sa.Text(), nullable=True),
    sa.Index(None, "contact_id"),
    sa.Index(None, "at"),
    # a reply by its subject (0017); a generic subject's row writes no index entry
    sa.Index(None, "address", "subject_key", "at", **t.not_null("subject_key")),
)

email_quarantine = sa.Table(
    "email_quarantine",
    t.metadata,
    sa.Column("n", _serial(), sa.Identity(), primary_key=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),  # smtp | imap
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("message_id", sa.String(), nullable=True),
    sa.Column("sender", sa.String(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=True),  # None when too big to keep
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

notifications = sa.Table(
    "notifications",
    t.metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("event_key", sa.String(), nullable=False, unique=True),
    sa.Column("template", sa.String(), nullable=False),
    sa.Column("channel", sa.String(), nullable=False),  # email | sms
    sa.Column("recipient", sa.String(), nullable=False),
    sa.Column("language", sa.String(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("contact_id", sa.String(), nullable=True),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("in_reply_to", sa.String(), nullable=True),
    sa.Column("quiet", sa.Boolean(), nullable=False),  # respects quiet hours (customers)
    # pending | sent | failed (gave up after the last attempt)
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_at", sa.Double(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("external_id", sa.String(), nullable=True),  # the Message-ID or the Twilio SID
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("sent_at", sa.Double(), nullable=True),
    sa.Index(None, "status", "next_at"),
    sa.Index(None, "contact_id"),
    sa.Index(None, "created_at"),  # the newest first, without sorting them all (migration 0015)
)

notification_attempts = sa.Table(
    "notification_attempts",
    t.metadata,
    sa.Column("n", _serial(), sa.Identity(), primary_key=True),
    sa.Column("notification_id", sa.String(), nullable=False),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index(None, "notification_id"),
    sqlite_autoincrement=True,
)

twilio_calls = sa.Table(
    "twilio_calls",
    t.metadata,
    sa.Column("call_sid", sa.String(), primary_key=True),
    sa.Column("contact_id", sa.String(), nullable=True, unique=True),
    sa.Column("caller", sa.String(), nullable=False),
    sa.Column("called", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)


@dataclass(slots=True)
class Notification:
    id: str
    event_key: str
    template: str
    channel: str
    recipient: str
    language: str
    subject: str
    body: str
    created_at: float
    contact_id: str | None = None
    manager_id: str | None = None
    in_reply_to: str | None = None
    quiet: bool = True
    status: str = "pending"
    attempts: int = 0
    next_at: float | None = None
    last_error: str | None = None
    external_id: str | None = None
    sent_at: float | None = None


def _note(row: sa.RowMapping) -> Notification:
    return Notification(**{k: row[k] for k in Notification.__slots__})  # type: ignore[attr-defined]


class MessagingStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    # ---- e-mail threads -----------------------------------------------------------

    async def record_message(
        self,
        message_id: str,
        contact_id: str | None,
        direction: str,
        first_time: bool,
        sender: str,
        subject: str,
        at: float,
        *,
        address: str | None = None,
    ) -> bool:
        """Remember a Message-ID; False when it was known already (nothing changes then).

        `address` is the customer's: the sender of a letter we receive (the default), the
        recipient of one we send (only when given: a seller's notification has a contact but
        is not the customer's thread). With it goes the subject's `subject_key`, what
        `thread_by_subject` finds a thread by."""
        if address is None and direction == "in":
            address = sender
        address = address.strip().lower() if address else None
        row = {
            "message_id": message_id,
            "contact_id": contact_id,
            "direction": direction,
            "first_time": first_time,
            "sender": sender,
            "subject": subject,
            "at": at,
            "address": address,
            "subject_key": subject_key(subject) if address else None,
        }
        async with self._store._write() as conn:
            done = await conn.execute(self._store._insert(email_messages).on_conflict_do_nothing(), row)
            return bool(done.rowcount)

    async def thread_contact(self, message_ids: Sequence[str]) -> str | None:
        """The contact of the newest known message among `message_ids` (a reply's references)."""
        if not message_ids:
            return None
        c = email_messages.c
        query = (
            sa.select(c.contact_id)
            .where(c.message_id.in_(list(message_ids)), c.contact_id.is_not(None))
            .order_by(c.at.desc())
            .limit(1)
        )
        row = await self._store._row(query)
        return None if row is None else row["contact_id"]

    async def thread_by_subject(self, address: str, key: str, since: float) -> str | None:
        """The contact of the newest message to or from `address` whose `subject_key` is `key`,
        in a thread (that contact's messages) with a message at `since` or later; None when
        there is none. One look-up by the (address, subject_key, at) index, then each
        candidate's newest message by the contact_id index."""
        m = email_messages.alias("m")
        last = (
            sa.select(sa.func.max(email_messages.c.at))
            .where(email_messages.c.contact_id == m.c.contact_id)
            .scalar_subquery()
        )
        query = (
            sa.select(m.c.contact_id)
            .where(
                m.c.address == address.strip().lower(),
                m.c.subject_key == key,
                m.c.contact_id.is_not(None),
                last >= since,
            )
            .order_by(m.c.at.desc())
            .limit(1)
        )
        row = await self._store._row(query)
        return None if row is None else row["contact_id"]

    async def messages(self, contact_id: str) -> list[dict[str, Any]]:
        c = email_messages.c
        query = sa.select(email_messages).where(c.contact_id == contact_id).order_by(c.at)
        return [dict(r) for r in await self._store._rows(query)]

    async def fairness(self, since: float | None) -> dict[str, int]:
        """First-time e-mail enquiries per manager who took them (assigned or finished)."""
        m, k = email_messages.c, t.contacts.c
        query = (
            sa.select(k.assigned_to, sa.func.count())
            .select_from(email_messages.join(t.contacts, t.contacts.c.id == m.contact_id))
            .where(m.first_time.is_(True), m.direction == "in", k.assigned_to.is_not(None))
            .group_by(k.assigned_to)
        )
        if since is not None:
            query = query.where(m.at >= since)
        return {r["assigned_to"]: int(r["count"]) for r in await self._store._rows(query)}

    async def waiting_first_time(self, since: float | None) -> int:
        m, k = email_messages.c, t.contacts.c
        query = (
            sa.select(sa.func.count().label("n"))
            .select_from(email_messages.join(t.contacts, t.contacts.c.id == m.contact_id))
            .where(m.first_time.is_(True), m.direction == "in", k.assigned_to.is_(None))
        )
        if since is not None:
            query = query.where(m.at >= since)
        row = await self._store._row(query)
        return int(row["n"]) if row else 0

    # ---- quarantine ---------------------------------------------------------------

    async def quarantine(
        self,
        at: float,
        source: str,
        reason: str,
        message_id: str | None,
        sender: str,
        subject: str,
        size: int,
        raw: bytes | None,
    ) -> None:
        row = {
            "at": at,
            "source": source,
            "reason": reason,
            "message_id": message_id,
            "sender": sender[:500],
            "subject": subject[:1000],
            "size": size,
            "raw": raw,
        }
        async with self._store._write() as conn:
            await conn.execute(email_quarantine.insert(), row)

    async def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        cols = [c for c in email_quarantine.c if c.name != "raw"]
        query = sa.select(*cols).order_by(email_quarantine.c.n.desc()).limit(limit)
        return [dict(r) for r in await self._store._rows(query)]

    # ---- notifications --------------------------------------------------------------

    async def add_notification(self, n: Notification) -> bool:
        """Insert; False when a notification with this `event_key` exists (never twice)."""
        row = {k: getattr(n, k) for k in Notification.__slots__}  # type: ignore[attr-defined]
        async with self._store._write() as conn:
            done = await conn.execute(
                self._store._insert(notifications).on_conflict_do_nothing(index_elements=["event_key"]), row
            )
            return bool(done.rowcount)

    async def due_notifications(self, now: float, limit: int = 50) -> list[Notification]:
        c = notifications.c
        query = (
            sa.select(notifications)
            .where(c.status == "pending", sa.or_(c.next_at.is_(None), c.next_at <= now))
            .order_by(c.next_at, c.created_at)
            .limit(limit)
        )
        return [_note(r) for r in await self._store._rows(query)]

    async def next_due(self) -> float | None:
        c = notifications.c
        row = await self._store._row(sa.select(sa.func.min(c.next_at).label("at")).where(c.status == "pending"))
        return None if row is None else row["at"]

    async def update_notification(self, n: Notification, attempt: tuple[float, bool, str | None] | None) -> None:
        """Save the notification's state and, in the same transaction, the attempt just made."""
        values = {k: getattr(n, k) for k in ("status", "attempts", "next_at", "last_error", "external_id", "sent_at")}
        async with self._store._write() as conn:
            await conn.execute(notifications.update().where(notifications.c.id == n.id).values(**values))
            if attempt is not None:
                at, ok, error = attempt
                await conn.execute(
                    notification_attempts.insert(), {"notification_id": n.id, "at": at, "ok": ok, "error": error}
                )

    async def get_notification(self, event_key: str) -> Notification | None:
        row = await self._store._row(sa.select(notifications).where(notifications.c.event_key == event_key))
        return None if row is None else _note(row)

    async def list_notifications(self, contact_id: str | None = None, limit: int = 100) -> list[Notification]:
        query = sa.select(notifications)
        if contact_id is not None:
            query = query.where(notifications.c.contact_id == contact_id)
        return [
            _note(r) for r in await self._store._rows(query.order_by(notifications.c.created_at.desc()).limit(limit))
        ]

    async def attempts(self, notification_id: str) -> list[dict[str, Any]]:
        c = notification_attempts.c
        query = sa.select(notification_attempts).where(c.notification_id == notification_id).order_by(c.n)
        return [dict(r) for r in await self._store._rows(query)]

    # ---- Twilio calls ---------------------------------------------------------------

    async def save_call(
        self,
        call_sid: str,
        contact_id: str | None,
        caller: str,
        called: str,
        status: str,
        at: float,
        *,
        final: Collection[str] = (),
    ) -> dict[str, Any]:
        """Record a call's status (and its contact, once known) and return its row as it stands
        after the write (`status`, `contact_id`). One statement, so two webhooks for the same
        call at once (Twilio sends status and action callbacks concurrently, to any node)
        cannot both read the old row and have the second write undo the first: a status in
        `final` is never replaced, and a write that names no contact keeps the one named."""
        row = {"call_sid": call_sid, "contact_id": contact_id, "caller": caller, "called": called, "status": status}
        c = twilio_calls.c
        statement = self._store._insert(twilio_calls)
        statement = statement.on_conflict_do_update(
            index_elements=["call_sid"],
            set_={
                "status": sa.case((c.status.in_(sorted(final)), c.status), else_=statement.excluded.status),
                "updated_at": statement.excluded.updated_at,
                "contact_id": sa.func.coalesce(statement.excluded.contact_id, c.contact_id),
            },
        ).returning(c.status, c.contact_id)
        async with self._store._write() as conn:
            stored = (await conn.execute(statement, {**row, "updated_at": at})).mappings().one()
        return dict(stored)

    async def get_call(self, call_sid: str) -> dict[str, Any] | None:
        row = await self._store._row(sa.select(twilio_calls).where(twilio_calls.c.call_sid == call_sid))
        return None if row is None else dict(row)

    async def call_for_contact(self, contact_id: str) -> dict[str, Any] | None:
        row = await self._store._row(sa.select(twilio_calls).where(twilio_calls.c.contact_id == contact_id))
        return None if row is None else dict(row)


def erase_messaging(
    conn: Connection,
    contact_ids: Sequence[str],
    phones: Collection[str],
    emails: Collection[str],
    text: Callable[[Any], Any],
) -> dict[str, int]:
    """A customer's erasure (acd.storage.crm.erase_customer_rows): their letters' senders,
    addresses and subjects; the notifications to them (recipient, subject and body go) and
    about them (their words go); the quarantined mail they sent; their Twilio caller numbers.
    Message-IDs stay: they thread nothing once the addresses are gone, and name no person."""
    m, n, q, calls = email_messages.c, notifications.c, email_quarantine.c, twilio_calls.c
    addresses = [e.lower() for e in emails]
    blank = {"sender": "", "subject": "", "address": None, "subject_key": None}
    changed: dict[str, int] = {}
    mine_m = sa.or_(m.contact_id.in_(contact_ids), m.address.in_(addresses), sa.func.lower(m.sender).in_(addresses))
    changed["email_messages"] = conn.execute(email_messages.update().where(mine_m).values(blank)).rowcount
    to_them = sa.or_(
        n.recipient.in_([*phones, *addresses]), sa.and_(n.contact_id.in_(contact_ids), n.manager_id.is_(None))
    )
    ids = [i for (i,) in conn.execute(sa.select(n.id).where(sa.or_(to_them, n.contact_id.in_(contact_ids))))]
    changed["notifications"] = conn.execute(
        notifications.update().where(to_them).values(recipient="", subject="", body="", last_error=None)
    ).rowcount
    about = sa.and_(n.contact_id.in_(contact_ids), n.manager_id.is_not(None))
    changed["notifications"] += scrub_rows(
        conn, notifications, about, {"subject": text, "body": text, "last_error": text}
    )
    a = notification_attempts.c
    changed["notification_attempts"] = scrub_rows(
        conn, notification_attempts, a.notification_id.in_(ids), {"error": text}
    )
    mine_q = sa.func.lower(q.sender).in_(addresses)
    changed["email_quarantine"] = conn.execute(
        email_quarantine.update().where(mine_q).values(sender="", subject="", raw=None)
    ).rowcount
    mine_c = sa.or_(calls.contact_id.in_(contact_ids), calls.caller.in_(list(phones)))
    changed["twilio_calls"] = conn.execute(twilio_calls.update().where(mine_c).values(caller="")).rowcount
    return changed
