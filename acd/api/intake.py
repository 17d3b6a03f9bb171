"""Adapter: the web-lead intake line. Leads that arrive while the previous batch is being
stored wait for the next one and go in together: one CRM look-up for the batch and one
transaction for its contacts. Each caller still gets its answer only after its contact
is committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from acd.core.model import Contact
from acd.storage import Store

log = logging.getLogger("acd.intake")
EnrichMany = Callable[[Sequence[Contact]], Awaitable[list[Contact]]]


@dataclass(slots=True)
class _Pending:
    contact: Contact
    key: str | None
    answer: asyncio.Future[tuple[Contact, bool]]


class Intake:
    def __init__(self, store: Store, enrich_many: EnrichMany | None = None) -> None:
        self.store = store
        self.enrich_many = enrich_many
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
                contacts = [p.contact for p in batch]
                if self.enrich_many is not None:
                    contacts = await self.enrich_many(contacts)
                results = await asyncio.gather(
                    *(self.store.create_contact(c, p.key) for c, p in zip(contacts, batch, strict=True)),
                    return_exceptions=True,
                )
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
