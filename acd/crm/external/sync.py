"""Adapter: an external CRM beside ours — look-ups while routing, finished contacts pushed back.

Look-ups are cached (`crm.external.cache`) and bounded by `crm.external.timeout`: a slow or
failing CRM costs a contact at most that long, and it is routed without (logged).

Pushes go through the durable outbox `crm_sync` (`acd.storage.crm_sync`), with the approach
of the notifier (`acd.messaging.notify`): one row per finished contact, written right after
the dispatcher commits the contact (`FinishedFeed`), sent by one worker, retried with the
same back-off. Unlike a notification, a push is retried after a stop mid-send: every attempt
carries the same idempotency key, so the CRM can tell a retry from a new contact, and a row
the CRM acknowledged is `sent` and never sent again. At start the worker also writes the rows
a crash between a contact's commit and its outbox row left out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from acd.config.crm_external import ExternalCrmSettings
from acd.core.events import ContactRerouted
from acd.core.model import Contact, ContactStatus
from acd.crm.external.base import (
    ExternalCrm,
    ExternalMatch,
    Notice,
    Refused,
    finished_body,
    idempotency_key,
    rerouted,
    route_external,
)
from acd.crm.identity import normalize_email, normalize_phone
from acd.crm.model import Vacation
from acd.crm.routing import StageRule
from acd.messaging.notify import backoff
from acd.runtime import cancel_and_wait, outbox_rounds
from acd.storage import Store
from acd.storage.crm_sync import SyncItem, SyncStore

log = logging.getLogger("acd.crm.external")

CACHE_SIZE = 10_000
CATCH_UP_MARGIN = 60.0  # seconds before the newest outbox row that the start-up sweep re-checks
LOOKUP_PAUSE = 30.0  # after a failed or slow look-up, contacts route without asking for this long


def build_adapter(settings: ExternalCrmSettings) -> ExternalCrm:
    if settings.kind == "bitrix24":
        from acd.crm.external.bitrix24 import Bitrix24Crm

        return Bitrix24Crm(settings)
    from acd.crm.external.http import HttpCrm

    return HttpCrm(settings)


class ExternalSync:
    def __init__(
        self,
        adapter: ExternalCrm,
        store: Store,
        settings: Callable[[], ExternalCrmSettings | None],
        region: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.adapter = adapter
        self.outbox = SyncStore(store)
        self._settings = settings
        self._region = region
        self.clock = clock
        self._cache: dict[tuple[str | None, str | None], tuple[float, ExternalMatch | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        self._warned: ExternalCrmSettings | None = None
        self._paused_until = 0.0
        self.sent = 0

    @property
    def settings(self) -> ExternalCrmSettings | None:
        """The section as configured now; a reload's new URLs, secret or timeout reach the
        adapter here (a new `kind` needs a restart)."""
        s = self._settings()
        if s is not None and s is not self.adapter.settings:
            if s.kind == self.adapter.name:
                self.adapter.settings = s
            elif s is not self._warned:
                self._warned = s
                log.error("crm.external.kind changed to %s: restart the server to switch CRMs", s.kind)
        return s

    # ---- look-ups -----------------------------------------------------------------------

    async def find(self, phone: str | None, email: str | None) -> ExternalMatch | None:
        """The external CRM's answer, from the cache when fresh; None on a timeout or an
        error (logged), so routing never waits longer than `timeout`. After one, the CRM is
        left alone for `LOOKUP_PAUSE` seconds: an outage costs one contact the timeout, not
        every contact."""
        s = self.settings
        if s is None or s.lookup == "off" or not (phone or email):
            return None
        now = self.clock()
        hit = self._cache.get((phone, email))
        if hit is not None and now - hit[0] < s.cache:
            return hit[1]
        if now < self._paused_until:
            return None
        try:
            async with asyncio.timeout(s.timeout):  # not wait_for: it can lose a cancellation
                match = await self.adapter.lookup(phone, email)
        except Exception as err:
            why = f"took over {s.timeout:.1f} s" if isinstance(err, TimeoutError) else f"failed ({err})"
            log.warning("%s look-up %s; routing without it for %.0f s", self.adapter.name, why, LOOKUP_PAUSE)
            self._paused_until = self.clock() + LOOKUP_PAUSE
            return None
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[(phone, email)] = (now, match)
        return match

    async def route(
        self,
        contact: Contact,
        phone: str | None,
        email: str | None,
        *,
        known: bool,
        stages: Mapping[str, StageRule],
        vacations: Sequence[Vacation],
        now: float,
        serving: Collection[str] | None = None,
    ) -> Contact:
        """`contact` routed by the external CRM too: when our CRM had nobody for the customer
        (not `known`: a stranger, or no open deal, account manager or pin; `lookup: unknown`)
        or for everyone (`lookup: always`). `serving` as in `acd.crm.routing.route_repeat`.
        A customer the CRM does not know (or did not answer for) leaves `external: None`:
        should the CRM come to know them while the contact waits, its notice naming their
        phone or e-mail routes the contact to them (`base.Notice.concerns`)."""
        s = self.settings
        if s is None or s.lookup == "off" or (known and s.lookup == "unknown"):
            return contact
        match = await self.find(phone, email)
        if match is None:
            return replace(contact, payload={**contact.payload, "external": None}) if phone or email else contact
        return route_external(contact, match, s, stages, vacations, now, serving)

    # ---- change notifications -----------------------------------------------------------

    def forget(self, notice: Notice) -> int:
        """Drop the cached answers `notice` may have made stale, so the next contact of those
        customers is looked up afresh. Returns how many."""
        stale = [key for key, (_, match) in self._cache.items() if notice.matches(match, *key)]
        for key in stale:
            del self._cache[key]
        return len(stale)

    def forget_all(self) -> int:
        """Drop every cached answer: for a change whose customers are not known (a Bitrix24
        deal event not asked about), any of them may be stale. Returns how many."""
        n = len(self._cache)
        self._cache.clear()
        return n

    def forget_person(self, phones: Collection[str], emails: Collection[str]) -> int:
        """Drop the cached answers looked up by any of these phones (in any spelling: compared
        in E.164) or e-mails: a customer's erasure (acd.crm.erasure), whose look-ups name them.
        Returns how many."""
        region = self._region()
        numbers = {n for p in phones if p and (n := normalize_phone(p, region))}
        addresses = {a for e in emails if e and (a := normalize_email(e))}
        theirs = [key for key in self._cache if key[0] in numbers or key[1] in addresses]
        for key in theirs:
            del self._cache[key]
        return len(theirs)

    async def rerouted(
        self,
        live: Sequence[tuple[Contact, str | None, str | None]],
        reason: str,
        default_team: str | None,
        *,
        stages: Mapping[str, StageRule],
        vacations: Sequence[Vacation],
        now: float,
        serving: Collection[str] | None = None,
    ) -> list[ContactRerouted]:
        """The waiting contacts (each with its E.164 phone and e-mail) a notice concerns, as
        the CRM's present answer routes them (`base.rerouted`): looked up afresh, once per
        phone and e-mail, within `timeout`. A contact whose look-up fails stays as it is."""
        s = self.settings
        if s is None or s.lookup == "off":
            return []
        answers: dict[tuple[str | None, str | None], ExternalMatch | None] = {}
        out = []
        for contact, phone, email in live:
            key = (phone, email)
            if key not in answers:
                try:
                    async with asyncio.timeout(s.timeout):
                        answers[key] = await self.adapter.lookup(phone, email)
                except Exception as err:
                    log.warning(
                        "%s look-up for contact %s failed (%s): left as routed", self.adapter.name, contact.id, err
                    )
                    continue
                self._cache[key] = (self.clock(), answers[key])
            change = rerouted(contact, answers[key], s, stages, vacations, now, serving, default_team, reason)
            if change is not None:
                out.append(change)
        return out

    # ---- the outbox ---------------------------------------------------------------------

    async def finished(self, contacts: Sequence[Contact]) -> int:
        """Queue the finished ones among `contacts` (each once, however often asked)."""
        s = self.settings
        if s is None or not s.push:
            return 0
        now = self.clock()
        items = [
            SyncItem(idempotency_key(c.id), c.id, finished_body(c, s, self._region()), now)
            for c in contacts
            if c.status is ContactStatus.FINISHED
        ]
        added = await self.outbox.add(items)
        if added:
            self._wake.set()
        return added

    async def retry(self, contact_id: str) -> SyncItem | None:
        """A given-up row back to `pending` with a fresh set of attempts and the same key;
        any other row is returned as it is (None: never queued)."""
        item = await self.outbox.get(idempotency_key(contact_id))
        if item is None or item.status != "failed":
            return item
        item.status, item.attempts, item.next_at, item.last_error = "pending", 0, None, None
        await self.outbox.update(item)
        self._wake.set()
        return item

    async def start(self) -> None:
        resumed = await self.outbox.requeue_sending()
        if resumed:
            log.warning("%d CRM push(es) interrupted by a stop are sent again (same idempotency keys)", resumed)
        newest = await self.outbox.newest()
        if newest is not None:
            missed = await self.outbox.finished_without_row(newest - CATCH_UP_MARGIN)
            if missed and await self.finished(missed):
                log.warning("%d finished contact(s) missing from the CRM outbox were added", len(missed))
        self._task = asyncio.create_task(self._run(), name="acd-crm-sync")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self.adapter.close()

    async def running(self, _: Any = None) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: the worker runs while the application does."""
        await self.start()
        yield
        await self.stop()

    async def _run(self) -> None:
        await outbox_rounds(self.send_due, self.outbox.next_due, self._wake, self.clock, log, "CRM push")

    async def send_due(self) -> int:
        """Send everything due now; return how many the CRM acknowledged."""
        async with self._sending:
            done = 0
            for item in await self.outbox.due(self.clock()):
                done += await self._attempt(item)
            return done

    async def _attempt(self, item: SyncItem) -> int:
        s = self.settings
        attempts, first, most = (s.attempts, s.backoff, s.max_backoff) if s else (1, 0.0, 0.0)
        now = self.clock()
        if not await self.outbox.claim(item):
            return 0
        try:
            item.external_id = await self.adapter.push(item.key, item.body)
        except Exception as err:  # one push's failure is that push's, not the worker's
            item.last_error = f"{type(err).__name__}: {err}"
            if isinstance(err, Refused) or item.attempts >= attempts:
                item.status, item.next_at = "failed", None
                log.error("CRM push of contact %s given up: %s", item.contact_id, item.last_error)
            else:
                item.status = "pending"
                item.next_at = now + backoff(item.attempts, first, most)
                log.warning("CRM push of contact %s failed (attempt %d): %s", item.contact_id, item.attempts, err)
            await self.outbox.update(item)
            return 0
        item.status, item.sent_at, item.next_at, item.last_error = "sent", self.clock(), None, None
        await self.outbox.update(item)
        self.sent += 1
        log.info("contact %s pushed to %s", item.contact_id, self.adapter.name)
        return 1


class FinishedFeed:
    """The dispatcher's persistence, plus an outbox row for each contact a commit finished.

    The core's `WorkFinished` leaves no command the dispatcher's listeners see (a finished
    contact is a `SaveContact`), so the commit itself is watched, like telephony's
    `ObservedStore`. A failure here never fails the commit: the start-up sweep adds the row.
    """

    def __init__(self, inner: Any, sync: ExternalSync) -> None:
        self._inner = inner
        self._sync = sync

    async def apply(self, contacts: Any, managers: Any, decisions: Any, transitions: Any) -> None:
        await self._inner.apply(contacts, managers, decisions, transitions)
        finished = [c for c in contacts if c.status is ContactStatus.FINISHED]
        if finished:
            try:
                await self._sync.finished(finished)
            except Exception:
                log.exception("could not queue %d finished contact(s) for the CRM", len(finished))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
