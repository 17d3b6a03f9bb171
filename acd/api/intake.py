"""Adapter: the web-lead intake line. Leads that arrive while a batch is being written wait
for the next one and go in together, in one transaction with the customers they create.
The writes keep the batches' order. Each caller still gets its answer only after its
contact is committed.

A batch is first prepared as if everyone in it were a new customer (most web leads are),
which needs no look-up: the transaction itself checks that nobody holds their phones and
e-mails, and leaves out the contacts of the people it finds known. Those are then
recognised through the CRM and written as its repeat customers (the careful road, one at a
time, when even that fails as a whole), on the side: their look-ups and write take several
round trips, and the batches behind do not wait for them (their queue order is their
arrival time, whatever order their rows went in). A contact is stored at its entry
escalation step (acd.core.intake.entry_step), once its customer is known: the dispatcher
then has nothing to rewrite when it arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from acd.core.intake import entry_step
from acd.core.model import Contact
from acd.core.policy import RoutingPolicy
from acd.storage import Refused, Store

log = logging.getLogger("acd.intake")
_ON_THE_SIDE = None  # a result still to come: the contact is being recognised (Intake._recognise)
_Results = Sequence[tuple[Contact, bool] | BaseException | None]
# Leads in one write at most: PostgreSQL takes at most 32,767 parameters in a statement
# (a look-up by the batch's ids is one each), and a burst that piled up while the
# database was slow must not become one write it refuses.
MAX_BATCH = 1000


class Recogniser(Protocol):
    """The CRM's side of intake (acd.crm.service.CrmService)."""

    def looks_up_first(self) -> bool: ...
    def assume_new(self, contacts: Sequence[Contact]) -> tuple[list[Contact], Any] | None: ...
    async def prepare_many(self, contacts: Sequence[Contact]) -> tuple[list[Contact], list[Any]]: ...
    def new_customers_work(self, fresh: Sequence[Any]) -> Any: ...
    async def enrich_many(self, contacts: Sequence[Contact]) -> list[Contact]: ...


@dataclass(slots=True)
class _Prepared:
    """A batch ready to store: its contacts, and the work that writes its new customers;
    `if_new`: prepared as if every customer were new (CrmService.assume_new)."""

    contacts: list[Contact]
    also: Any = None
    if_new: bool = False


@dataclass(slots=True)
class _Pending:
    contact: Contact
    key: str | None
    answer: asyncio.Future[tuple[Contact, bool]]


class Intake:
    def __init__(self, store: Store, policy: Callable[[], RoutingPolicy], crm: Recogniser | None = None) -> None:
        self.store = store
        self.policy = policy
        self.crm = crm
        self._waiting: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._more = asyncio.Event()  # set by each submit: the drain may start the next batch
        self._recognising: set[asyncio.Task[None]] = set()

    async def submit(self, contact: Contact, key: str | None) -> tuple[Contact, bool]:
        """Store one new contact (idempotent under `key`); returns it with its intake `seq`
        and whether it was created now."""
        answer: asyncio.Future[tuple[Contact, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(contact, key, answer))
        self._more.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        # Writes keep their order: one at a time, in batch order, each batch holding
        # everybody who came while the write before it went. The next write goes out the
        # moment one is done, before the done batch's callers run: answering them only
        # schedules them, and the writer must not wait while the event loop renders them.
        if self._looks_up_first():
            await self._drain_looking_up()
            return
        while self._waiting:
            batch, prepared = await self._take()  # costs no look-up: it does not wait
            self._settle(batch, await self._results(batch, prepared))

    async def _drain_looking_up(self) -> None:
        # A batch that needs a look-up before it is written (Recogniser.looks_up_first) is
        # prepared while the write before it goes. Its look-up reaches the store's writer
        # process after that write, so it sees what the write stored.
        writing: tuple[list[_Pending], asyncio.Task[_Results]] | None = None
        while self._waiting or writing is not None:
            if self._waiting:
                batch, prepared = await self._take()
                if writing is not None:
                    self._settle(writing[0], await writing[1])
                writing = batch, asyncio.create_task(self._results(batch, prepared))
                await asyncio.sleep(0)  # the write goes out before the next look-up
            else:
                assert writing is not None
                self._more.clear()
                more = asyncio.ensure_future(self._more.wait())
                await asyncio.wait((writing[1], more), return_when=asyncio.FIRST_COMPLETED)
                more.cancel()
                if writing[1].done():
                    self._settle(writing[0], writing[1].result())
                    writing = None

    def _looks_up_first(self) -> bool:
        return self.crm is not None and self.crm.looks_up_first()

    async def _take(self) -> tuple[list[_Pending], _Prepared | None]:
        """Everybody waiting, up to MAX_BATCH, prepared (None: the careful road, see `_store`)."""
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        try:
            return batch, await self._prepare(batch)
        except Exception:  # a bug must not leave the batch's callers waiting for ever
            log.exception("preparing an intake batch of %d failed", len(batch))
            return batch, None

    async def _results(self, batch: list[_Pending], prepared: _Prepared | None) -> _Results:
        try:
            return await self._store(batch, prepared)
        except Exception as err:  # handed to every caller: none of them was acknowledged
            log.exception("intake batch of %d failed", len(batch))
            return [err] * len(batch)

    @staticmethod
    def _settle(batch: list[_Pending], results: _Results) -> None:
        for p, result in zip(batch, results, strict=True):
            if p.answer.done() or result is _ON_THE_SIDE:
                continue
            if isinstance(result, BaseException):
                p.answer.set_exception(result)
            else:
                p.answer.set_result(result)

    async def _prepare(self, batch: list[_Pending], *, assume_new: bool = True) -> _Prepared | None:
        """The batch's contacts with their customers, at their entry step, and the new
        customers to write with them; None when recognition failed."""
        policy = self.policy()
        contacts = [p.contact for p in batch]
        if self.crm is None:
            return _Prepared([entry_step(c, policy) for c in contacts])
        assumed = self.crm.assume_new(contacts) if assume_new else None
        if assumed is not None:
            contacts, also = assumed
            return _Prepared([entry_step(c, policy) for c in contacts], also, if_new=True)
        try:
            contacts, fresh = await self.crm.prepare_many(contacts)
        except Exception:
            log.warning("recognising an intake batch of %d failed; storing one by one", len(batch), exc_info=True)
            return None
        also = self.crm.new_customers_work(fresh) if fresh else None
        return _Prepared([entry_step(c, policy) for c in contacts], also)

    async def _store(self, batch: list[_Pending], prepared: _Prepared | None) -> _Results:
        if prepared is not None:
            items = [(c, p.key) for c, p in zip(prepared.contacts, batch, strict=True)]
            if self.crm is None:
                try:
                    return await self.store.create_contacts(items)
                except Refused:
                    if len(items) == 1:
                        raise
                    # a value the database will never take: it must fail alone, not its batch
                    log.warning("intake batch of %d refused as a whole; storing one by one", len(batch), exc_info=True)
                    return await self._one_by_one(items)
            try:
                if prepared.if_new:
                    stored = await self.store.create_contacts_if_new(items, prepared.also)
                else:
                    return await self.store.create_contacts(items, prepared.also)
            except Exception:
                # Most likely a customer created meanwhile (by another process, or by the
                # batch written just before, recognised before it committed), or a reused
                # id: take the careful road, one contact at a time, so one bad row fails alone.
                log.warning("intake batch of %d failed as a whole; storing one by one", len(batch), exc_info=True)
            else:
                return self._recognise_left_out(batch, stored)
        assert self.crm is not None
        policy = self.policy()
        enriched = [entry_step(c, policy) for c in await self.crm.enrich_many([p.contact for p in batch])]
        return await self._one_by_one([(c, p.key) for c, p in zip(enriched, batch, strict=True)])

    async def _one_by_one(self, items: list[tuple[Contact, str | None]]) -> _Results:
        return await asyncio.gather(*(self.store.create_contact(c, key) for c, key in items), return_exceptions=True)

    def _recognise_left_out(self, batch: list[_Pending], stored: list[tuple[Contact, bool] | None]) -> _Results:
        """The answers of a batch stored as new customers' contacts (Store.create_contacts_if_new).
        The contacts it left out, of people found known, are answered once they are
        recognised and stored, on the side (`_recognise`)."""
        known = [batch[i] for i, answer in enumerate(stored) if answer is None]
        if known:
            task = asyncio.create_task(self._recognise(known))
            self._recognising.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._recognising.discard)
        return stored

    async def _recognise(self, known: list[_Pending]) -> None:
        try:
            results = await self._store(known, await self._prepare(known, assume_new=False))
        except Exception as err:  # a bug must not leave these callers waiting for ever
            log.exception("recognising %d known customer(s) of an intake batch failed", len(known))
            results = [err] * len(known)
        self._settle(known, results)
