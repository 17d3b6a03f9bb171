"""Adapter: the web-lead intake line. Leads that arrive while the previous batch is being
stored wait for the next one and go in together: one CRM look-up for the batch, and one
transaction for its contacts and the customers they create. Each caller still gets its
answer only after its contact is committed. A contact is stored at its entry escalation
step (acd.core.intake.entry_step), once its customer is known: the dispatcher then has
nothing to rewrite when it arrives."""

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

    async def prepare_many(self, contacts: Sequence[Contact]) -> tuple[list[Contact], list[Any]]: ...
    def new_customers_work(self, fresh: Sequence[Any]) -> Any: ...
    async def enrich_many(self, contacts: Sequence[Contact]) -> list[Contact]: ...


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

    async def submit(self, contact: Contact, key: str | None) -> tuple[Contact, bool]:
        """Store one new contact (idempotent under `key`); returns it with its intake `seq`
        and whether it was created now."""
        answer: asyncio.Future[tuple[Contact, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(contact, key, answer))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results: Sequence[tuple[Contact, bool] | BaseException] = await self._store(batch)
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

    async def _store(self, batch: list[_Pending]) -> Sequence[tuple[Contact, bool] | BaseException]:
        policy = self.policy()
        contacts = [p.contact for p in batch]
        if self.crm is None:
            items = [(entry_step(c, policy), p.key) for c, p in zip(contacts, batch, strict=True)]
            return await self.store.create_contacts(items)
        crm = self.crm
        try:
            contacts, fresh = await crm.prepare_many(contacts)
            contacts = [entry_step(c, policy) for c in contacts]

            items = [(c, p.key) for c, p in zip(contacts, batch, strict=True)]
            return await self.store.create_contacts(items, crm.new_customers_work(fresh) if fresh else None)
        except Exception:
            # Most likely a customer created meanwhile by another process, or a reused id:
            # take the careful road, one contact at a time, so one bad row fails alone.
            log.warning("intake batch of %d failed as a whole; storing one by one", len(batch), exc_info=True)
        enriched = [entry_step(c, policy) for c in await crm.enrich_many([p.contact for p in batch])]
        return await asyncio.gather(
            *(self.store.create_contact(c, p.key) for c, p in zip(enriched, batch, strict=True)),
            return_exceptions=True,
        )
