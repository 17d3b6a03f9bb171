"""Builders for core tests: a switchboard, managers and contacts with a hand-held clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from acd.core import events as ev
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, Manager, Presence
from acd.core.policy import RoutingPolicy
from acd.core.switchboard import Switchboard

T0 = 1_795_000_000.0  # a fixed Monday-ish moment; tests move time by hand
CAPACITY = {Channel.CALL: 1, Channel.CALLBACK: 1, Channel.WEB: 3, Channel.EMAIL: 5}


def manager(mid: str, **kw: object) -> Manager:
    kw.setdefault("capacity", dict(CAPACITY))
    kw.setdefault("name", mid.title())
    return Manager(id=mid, **kw)  # type: ignore[arg-type]


def contact(cid: str, channel: Channel = Channel.WEB, **kw: object) -> Contact:
    return Contact(id=cid, channel=channel, arrived_at=kw.pop("arrived_at", 0.0), **kw)  # type: ignore[arg-type]


@dataclass
class Harness:
    """A switchboard plus a clock and a record of what it said."""

    board: Switchboard
    now: float = T0
    log: list[ev.Command] = field(default_factory=list)
    seq: int = 0
    timers: dict[tuple[str, str], float] = field(default_factory=dict)

    def send(self, event: ev.Event) -> list[ev.Command]:
        out = self.board.handle(event, self.now)
        self.record(out)
        return out

    def record(self, out: list[ev.Command]) -> None:
        self.log += out
        for cmd in out:
            if isinstance(cmd, ev.StartTimer):
                self.timers[cmd.key] = cmd.at
            elif isinstance(cmd, ev.CancelTimer):
                self.timers.pop(cmd.key, None)

    def tick(self, seconds: float) -> None:
        """Advance the clock, firing every timer that comes due, in time order."""
        target = self.now + seconds
        while self.timers:
            key, at = min(self.timers.items(), key=lambda kv: kv[1])
            if at > target:
                break
            del self.timers[key]
            self.now = max(self.now, at)
            self.send(ev.TimerFired(key))
        self.now = target

    def _stamped(self, c: Contact) -> Contact:
        """`c` as intake hands it over: numbered, timed, qualified."""
        self.seq += 1
        c.seq = c.seq or self.seq
        c.arrived_at = c.arrived_at or self.now
        return qualify(c, self.board.policy)

    def arrive(self, c: Contact) -> list[ev.Command]:
        return self.send(ev.ContactArrived(self._stamped(c)))

    def arrive_together(self, *contacts: Contact) -> list[ev.Command]:
        """A burst of arrivals routed in one pass (Switchboard.handle_arrivals)."""
        out = self.board.handle_arrivals([self._stamped(c) for c in contacts], self.now)
        self.record(out)
        return out

    def join(self, *managers: Manager) -> None:
        for m in managers:
            self.send(ev.ManagerSaved(m))
            self.send(ev.PresenceSet(m.id, Presence.AVAILABLE))

    def offers(self) -> list[ev.OfferContact]:
        return [c for c in self.log if isinstance(c, ev.OfferContact)]

    def last_offer(self) -> ev.OfferContact:
        return self.offers()[-1]

    def offered_to(self, cid: str) -> str | None:
        c = self.board.contacts.get(cid)
        return c.offered_to if c else None

    def presence(self, mid: str) -> Presence:
        return self.board.managers[mid].presence


def harness(**policy: object) -> Harness:
    return Harness(Switchboard(RoutingPolicy(**policy)))  # type: ignore[arg-type]
