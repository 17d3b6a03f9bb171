"""Pure: the values the routing core reasons about.

Everything here is plain data. Times are POSIX seconds (float, UTC) passed in by the
caller; the core never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    CALL = "call"
    CALLBACK = "callback"
    WEB = "web"
    EMAIL = "email"

    @property
    def is_voice(self) -> bool:
        return self in (Channel.CALL, Channel.CALLBACK)


class ContactStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    FINISHED = "finished"
    ABANDONED = "abandoned"

    @property
    def is_open(self) -> bool:
        return self in (ContactStatus.WAITING, ContactStatus.OFFERED, ContactStatus.ASSIGNED)


class Presence(StrEnum):
    """A manager's routing state; `PAUSED` always carries a reason."""

    AVAILABLE = "available"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    OFFLINE = "offline"

    @property
    def is_staffed(self) -> bool:
        """Logged in and not paused: could take work now or soon."""
        return self in (Presence.AVAILABLE, Presence.OFFERED, Presence.BUSY, Presence.WRAP_UP)


class Outcome(StrEnum):
    DONE = "done"
    WON = "won"
    LOST = "lost"
    TRANSFERRED = "transferred"
    UNREACHED = "unreached"  # the work ended without reaching the customer (a callback nobody answered)


@dataclass(slots=True)
class Contact:
    """One customer contact on any channel.

    `seq` is the intake order, the last tie-break of the queue order. `preferred` lists
    managers the contact should reach first (a pin, the deal's owner, substitutes) and
    `team` the team that serves it (e.g. the owner team of the deal's funnel stage);
    `first_wait`, when set, is how long it waits for them (the funnel stage's `wait`).
    """

    id: str
    channel: Channel
    arrived_at: float
    seq: int = 0
    criteria: Mapping[str, str] = field(default_factory=dict)
    customer_id: str | None = None
    customer_name: str = ""
    phone: str = ""
    email: str = ""
    priority: int = 0
    language: str | None = None
    required_skills: frozenset[str] = frozenset()
    preferred: tuple[str, ...] = ()
    team: str | None = None
    first_wait: float | None = None  # seconds in the first escalation step instead of the policy's
    status: ContactStatus = ContactStatus.WAITING
    offered_to: str | None = None
    offer_expires_at: float | None = None
    assigned_to: str | None = None
    declined_by: frozenset[str] = frozenset()
    step: int = 0
    step_since: float = 0.0
    pinned_to: str | None = None
    pin_expires_at: float | None = None
    override: bool = False
    outcome: Outcome | None = None
    finished_at: float | None = None
    payload: Mapping[str, object] = field(default_factory=dict)

    def segment(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(self.criteria.get(k, "") for k in keys)


def _copier(cls: type) -> Callable[..., Any]:
    # `dataclasses.replace` calls __init__ with every field as a keyword: 7 µs for a Contact,
    # and a web lead is copied three times on its way in. A function that copies the fields
    # by name, made once the way dataclasses makes __init__, takes a tenth of that.
    body = "".join(f"    copy.{f.name} = c.{f.name}\n" for f in fields(cls))
    source = f"def evolve(c, **changes):\n    copy = new(cls)\n{body}    for k, v in changes.items():\n"
    source += "        setattr(copy, k, v)\n    return copy\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(source, namespace)
    return namespace["evolve"]  # type: ignore[no-any-return]


_evolve_contact = _copier(Contact)


def evolve(contact: Contact, **changes: Any) -> Contact:
    """`dataclasses.replace(contact, **changes)`, faster (an unknown field raises AttributeError)."""
    return _evolve_contact(contact, **changes)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Manager:
    """A manager as the router sees them.

    `skills` maps a skill name to a proficiency from 1 (novice) to 5 (expert).
    `capacity` is how many open contacts of each channel they may hold at once; `load` is
    how many they hold now. Counters ending in `_today` reset at the site's midnight.
    """

    id: str
    name: str = ""
    team: str | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    languages: frozenset[str] = frozenset()
    capacity: Mapping[Channel, int] = field(default_factory=dict)
    device: str = ""
    email: str = ""
    order: int = 0
    daily_cap: int | None = None
    presence: Presence = Presence.OFFLINE
    pause_reason: str | None = None
    presence_since: float = 0.0
    load: dict[Channel, int] = field(default_factory=dict)
    offer_contact_id: str | None = None
    missed_in_row: int = 0
    last_heartbeat: float = 0.0
    last_finished_at: float | None = None
    last_offered_at: float | None = None
    day: str = ""
    assigned_today: int = 0
    handled_today: int = 0
    device_busy: bool = False
    active: bool = True

    def has_room(self, channel: Channel) -> bool:
        return self.load.get(channel, 0) < self.capacity.get(channel, 0)

    @property
    def on_voice(self) -> bool:
        return any(self.load.get(ch, 0) for ch in (Channel.CALL, Channel.CALLBACK))

    @property
    def total_load(self) -> int:
        return sum(self.load.values())
