"""Adapter: repeat customers' waiting contacts routed again when what the CRM routes them by
changes, whoever changed it and whenever (`CrmService.routed_again` says how).

Changes come four ways: a request that made one (a deal moved, a pin, an import: `apply`,
awaited by its handler), a manager deactivated or active again (the dispatcher's commits,
`watch_managers`), a vacation beginning or ending at its midnight, when nobody asks for
anything, and the office's own CRM's change notification (`later`: worked out after it is
answered).

Vacations' midnights: whoever wrote the vacation (this process's API, another node of the
cluster, a tool or script on the database), its boundaries are in the store, so the store
is what is read: at each midnight of the site's time zone (the days vacations run by,
`CrmService.day_start`) one look reads the vacations that began or ended since the last look
and routes their managers' waiting contacts again. A vacation cancelled before its midnight is
no longer there to be read. Only the node that dispatches acts on what it reads (the others'
contacts are a read copy); every node still looks, so a node that takes over does not act on
midnights its predecessor handled.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from acd.core import events as ev
from acd.core.model import Contact, ContactStatus, Manager
from acd.crm.model import Vacation
from acd.crm.service import CrmService, RoutingChange, next_midnight

log = logging.getLogger("acd.crm")
LIVE = (ContactStatus.WAITING, ContactStatus.OFFERED)
RETRY = 60.0  # seconds until a look at the vacations that could not read them tries again


class Live(Protocol):  # acd.dispatcher.Dispatcher (acd.cluster's has `leading` too)
    @property
    def board(self) -> Any: ...  # contacts, managers, policy: the core's state

    async def submit(self, event: ev.Event) -> list[ev.Command]: ...

    def watch_managers(self, watcher: Callable[[list[Manager]], None]) -> None: ...


class Rerouting:
    def __init__(self, crm: CrmService, live: Live, clock: Callable[[], float]) -> None:
        self.crm = crm
        self.live = live
        self.clock = clock
        self._looked = clock()  # vacations' boundaries up to here are behind us (see `_look`)
        self._next = math.inf  # when the vacations are looked at next
        self._timer: asyncio.TimerHandle | None = None
        self._looking = asyncio.Lock()
        self._serving = _active(live.board.managers)
        self._tasks: set[asyncio.Task[None]] = set()
        live.watch_managers(self._managers_saved)

    async def running(self, _: object) -> AsyncIterator[None]:
        """For the web app's cleanup_ctx: the vacations' midnights while the server runs.
        Boundaries that passed while it was stopped are not applied: contacts restored at start
        keep the routing they were stored with."""
        self._looked = self.clock()
        await self._look()  # sets the timer; a failure to read is logged, and retried
        yield
        self._disarm()
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

    async def _look(self) -> None:
        """Route again by the vacations that began or ended after the last look and by now, as the
        store has them, then set the timer for the next midnight (or a stored boundary before
        it: one recorded when the site's time zone was another). Looks run one at a time, each
        window after the last, so no boundary is applied twice; one whose read failed leaves
        its window to the next."""
        async with self._looking:
            since, upto = self._looked, self.clock()
            try:
                stored = await self.crm.repo.list_vacations(ending_after=since)
            except Exception:  # the window stays open: the retry covers it
                log.exception("vacations could not be read: their midnights route waiting contacts again later")
                self._arm(min(upto + RETRY, next_midnight(self.crm.deployment.tz, upto)))
                return
            self._looked = upto
            soonest = (t for v in stored for t, _ in _edges(v) if t > upto)
            self._arm(min([next_midnight(self.crm.deployment.tz, upto), *soonest]))
            passed = sorted(
                ((t, v.id, began, v) for v in stored for t, began in _edges(v) if since < t <= upto),
                key=lambda p: (p[0], p[2], p[1]),  # in time order; at one midnight, those over first
            )
            if not passed:
                return
            self.crm.forget_vacations()  # the list kept for intake may predate a vacation written elsewhere
            if not getattr(self.live, "leading", True):  # a cluster's follower: the dispatching node acts
                return
            for _, _, began, v in passed:
                await self.apply(RoutingChange.boundary(v, began=began))

    def _arm(self, at: float) -> None:
        self._disarm()
        self._next = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - self.clock()), self._due)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._next = None, math.inf

    def _due(self) -> None:
        at, self._timer = self._next, None
        if self.clock() < at:  # a loop timer may fire a hair early, or the clock was set back
            self._arm(at)
            return
        self._next = math.inf
        task = asyncio.create_task(self._look(), name="acd-crm-vacations")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


def _edges(v: Vacation) -> tuple[tuple[float, bool], ...]:
    """Vacation `v`'s boundaries: (when, True for its start); none for one that covers no time."""
    return ((v.starts_at, True), (v.ends_at, False)) if v.starts_at < v.ends_at else ()
