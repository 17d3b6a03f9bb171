"""Adapter: repeat customers' waiting contacts routed again when what the CRM routes them by
changes, whoever changed it and whenever (`CrmService.routed_again` says how).

Changes come four ways: a request that made one (a deal moved, a pin, an import: `apply`,
awaited by its handler), a manager deactivated or active again (the dispatcher's commits,
`watch_managers`), and a vacation beginning or ending at its midnight, when nobody asks for
anything: a deadline on the dispatcher's kind of timer (`acd.deadlines`) for each boundary
of each vacation not over yet, set at start and as vacations are recorded and cancelled;
and the office's own CRM's change notification (`later`: worked out after it is answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from acd.core import events as ev
from acd.core.model import Contact, ContactStatus, Manager
from acd.crm.model import Vacation
from acd.crm.service import CrmService, RoutingChange
from acd.deadlines import Deadlines

log = logging.getLogger("acd.crm")
LIVE = (ContactStatus.WAITING, ContactStatus.OFFERED)
Boundary = tuple[int, bool]  # (vacation id, True for its start / False for its end)


class Live(Protocol):  # acd.dispatcher.Dispatcher
    @property
    def board(self) -> Any: ...  # contacts, managers, policy: the core's state

    async def submit(self, event: ev.Event) -> list[ev.Command]: ...

    def watch_managers(self, watcher: Callable[[list[Manager]], None]) -> None: ...


class Rerouting:
    def __init__(self, crm: CrmService, live: Live, clock: Callable[[], float]) -> None:
        self.crm = crm
        self.live = live
        self.clock = clock
        self._boundaries: Deadlines[Boundary] = Deadlines(self._due, clock)
        self._vacations: dict[int, Vacation] = {}
        self._serving = _active(live.board.managers)
        self._tasks: set[asyncio.Task[None]] = set()
        live.watch_managers(self._managers_saved)

    async def running(self, _: object) -> AsyncIterator[None]:
        """For the web app's cleanup_ctx: the vacations' deadlines while the server runs."""
        try:
            for v in await self.crm.repo.list_vacations(ending_after=self.clock()):
                self.vacation_recorded(v)
        except Exception:  # the server must still start; vacations still route contacts as they arrive
            log.exception("vacations could not be read: their midnights will not route waiting contacts again")
        yield
        self._boundaries.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def apply(self, change: RoutingChange | None) -> None:
        """Every contact `change` concerns still waiting or being offered is routed again by
        the CRM's present answer (core: `ContactRerouted`); one being worked is not. Returns
        once the dispatcher has committed, so the caller's next read sees it. The change
        stands whatever happens here: a failure is logged, and the contacts go on as they
        were routed."""
        if change is None:
            return
        try:
            board = self.live.board
            live = live_contacts(board.contacts.values(), change)
            if not live:
                return
            events = await self.crm.routed_again(live, change, board.policy.default_team)
            await asyncio.gather(*(self.live.submit(e) for e in events))
        except Exception:
            log.exception("%s; routing the waiting contacts it concerns again failed", change.reason)

    # ---- vacations' midnights ----------------------------------------------------------

    def vacation_recorded(self, v: Vacation) -> None:
        self._vacations[v.id] = v
        now = self.clock()
        if v.starts_at > now:
            self._boundaries.set((v.id, True), v.starts_at)
        if v.ends_at > now:
            self._boundaries.set((v.id, False), v.ends_at)

    def vacation_cancelled(self, n: int) -> None:
        self._vacations.pop(n, None)
        self._boundaries.cancel((n, True))
        self._boundaries.cancel((n, False))

    def _due(self, key: Boundary) -> None:
        n, began = key
        v = self._vacations.get(n)
        if v is None:
            return
        at = v.starts_at if began else v.ends_at
        if self.clock() < at:  # a loop timer may fire a hair early, or the clock was set back
            self._boundaries.set(key, at)
            return
        if not began:
            del self._vacations[n]
        self._spawn(RoutingChange.boundary(v, began=began))

    # ---- the roster ----------------------------------------------------------------------

    def _managers_saved(self, managers: list[Manager]) -> None:
        """After a commit: a manager deactivated (or removed) serves nobody from now on, one
        active again serves their customers again; their contacts need not wait for an
        escalation step to time out."""
        changed = [m for m in managers if m.active != (m.id in self._serving)]
        if not changed:
            return
        then = frozenset(self._serving)
        self._serving = _active(self.live.board.managers)
        self._spawn(RoutingChange.roster(then, self._serving))

    def _spawn(self, change: RoutingChange | None) -> None:
        if change is None:
            return
        task = asyncio.create_task(self.apply(change), name="acd-crm-reroute")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def later(self, change: Awaitable[RoutingChange | None]) -> None:
        """Route again by a change still to be worked out (an external CRM's notification,
        whose look-ups must not hold its answer), on the side like the others."""

        async def work() -> None:
            try:
                found = await change
            except Exception:
                log.exception("a change notification could not be worked out; its contacts stay as routed")
                return
            await self.apply(found)

        task = asyncio.create_task(work(), name="acd-crm-reroute")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def live_contacts(contacts: Iterable[Contact], change: RoutingChange) -> list[Contact]:
    """Waiting or offered contacts `change` concerns, not pinned to anyone."""
    return [c for c in contacts if c.status in LIVE and not c.pinned_to and change.concerns(c) is not None]


def _active(managers: Mapping[str, Manager]) -> frozenset[str]:
    return frozenset(m.id for m in managers.values() if m.active)
