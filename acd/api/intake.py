"""Adapter: the web-lead intake line. Leads that arrive while a batch is being written wait
for the next one and go in together, in one transaction with the customers they create.
The writes keep the batches' order. Each caller still gets its answer only after its
contact is committed.

A batch is first prepared as if everyone in it were a new customer (most web leads are),
which needs no look-up: the transaction itself checks that nobody holds their phones and
e-mails, and leaves out the contacts of the people it finds known. Those are then
recognised through the CRM and written as its repeat customers (the careful road, one at a
time, when even that fails as a whole). A contact is stored at its entry escalation step
(acd.core.intake.entry_step), once its customer is known: the dispatcher then has nothing
to rewrite when it arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from acd.core.intake import entry_step
from acd.core.model import Contact
from acd.core.policy import RoutingPolicy
from acd.storage import Store

log = logging.getLogger("acd.intake")


class Recogniser(Protocol):
    """The CRM's side of intake (acd.crm.service.CrmService)."""

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
        # Writes keep their order: one at a time, in batch order. A batch whose preparation
        # waits on a look-up (recognition before writing) is prepared while the one before
        # it is written; one that costs no wait is taken only when that write is done, so
        # that it holds everybody who came meanwhile.
        writing: asyncio.Task[None] | None = None
        looks_up = True
        while True:
            if writing is not None and not looks_up:
                await writing
                writing = None
                continue
            if not self._waiting:
                if writing is None:
                    return
                self._more.clear()
                more = asyncio.ensure_future(self._more.wait())
                await asyncio.wait((writing, more), return_when=asyncio.FIRST_COMPLETED)
                more.cancel()
                if writing.done():
                    writing = None
                continue
            batch, self._waiting = self._waiting, []
            prepared = await self._prepare(batch)
            looks_up = prepared is None or not (prepared.if_new or self.crm is None)
            if writing is not None:
                await writing
            writing = asyncio.create_task(self._answer(batch, prepared))
            # let the write go out first: the store's writer process answers in order, so
            # the next batch's look-up then runs right after this write commits, and sees it
            await asyncio.sleep(0)

    async def _answer(self, batch: list[_Pending], prepared: _Prepared | None) -> None:
        try:
            results: Sequence[tuple[Contact, bool] | BaseException] = await self._store(batch, prepared)
        except Exception as err:  # handed to every caller: none of them was acknowledged
            log.exception("intake batch of %d failed", len(batch))
            results = [err] * len(batch)
        for p, result in zip(batch, results, strict=True):
            if p.answer.done():
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

    async def _store(
        self, batch: list[_Pending], prepared: _Prepared | None
    ) -> Sequence[tuple[Contact, bool] | BaseException]:
        if prepared is not None:
            items = [(c, p.key) for c, p in zip(prepared.contacts, batch, strict=True)]
            if self.crm is None:
                return await self.store.create_contacts(items)
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
                return await self._recognise_left_out(batch, stored)
        assert self.crm is not None
        policy = self.policy()
        enriched = [entry_step(c, policy) for c in await self.crm.enrich_many([p.contact for p in batch])]
        return await asyncio.gather(
            *(self.store.create_contact(c, p.key) for c, p in zip(enriched, batch, strict=True)),
            return_exceptions=True,
        )

    async def _recognise_left_out(
        self, batch: list[_Pending], stored: list[tuple[Contact, bool] | None]
    ) -> Sequence[tuple[Contact, bool] | BaseException]:
        """The answers of a batch stored as new customers' contacts (Store.create_contacts_if_new),
        once the contacts it left out, of people found known, are recognised and stored."""
        known = [i for i, answer in enumerate(stored) if answer is None]
        answers: list[tuple[Contact, bool] | BaseException] = [a for a in stored if a is not None]
        if known:
            rest = [batch[i] for i in known]
            recognised = await self._store(rest, await self._prepare(rest, assume_new=False))
            for i, answer in zip(known, recognised, strict=True):
                answers.insert(i, answer)
        return answers
