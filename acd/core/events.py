"""Pure: what happens to the core (events, past tense) and what it asks for (commands).

Adapters turn peer messages into events; the dispatcher feeds them to
`Switchboard.handle(event, now)` and carries out the commands it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from acd.core.model import Contact, Manager, Outcome, Presence
from acd.core.policy import RoutingPolicy

# ---- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactArrived:
    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    contact_id: str
    reason: str = "caller hung up"


@dataclass(frozen=True, slots=True)
class ManagerSaved:
    """A manager was created or their profile (skills, team, capacity...) changed."""

    manager: Manager


@dataclass(frozen=True, slots=True)
class ManagerRemoved:
    manager_id: str


@dataclass(frozen=True, slots=True)
class PresenceSet:
    """A manager (or a supervisor for them) asked for available, paused or offline."""

    manager_id: str
    presence: Presence
    reason: str | None = None
    by: str = "manager"


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    manager_id: str


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    contact_id: str
    manager_id: str


@dataclass(frozen=True, slots=True)
class OfferDeclined:
    contact_id: str
    manager_id: str
    reason: str = "declined"


@dataclass(frozen=True, slots=True)
class OfferFailed:
    """The offer could not be delivered (device busy, originate failed): move on, no pause."""

    contact_id: str
    manager_id: str
    reason: str = "device busy"


@dataclass(frozen=True, slots=True)
class WorkFinished:
    contact_id: str
    manager_id: str | None = None
    outcome: Outcome = Outcome.DONE


@dataclass(frozen=True, slots=True)
class ContactReassigned:
    """A supervisor's override: offer (or hand) the contact to this manager."""

    contact_id: str
    manager_id: str
    by: str
    pin_until: float | None = None


@dataclass(frozen=True, slots=True)
class ContactTransferred:
    """The manager who has a contact passes it on (a blind transfer of a call): it leaves
    them and waits again at its old place, pinned to `to_manager` (until `pin_until`, if
    given) or routed within `to_team`."""

    contact_id: str
    by: str
    to_manager: str | None = None
    to_team: str | None = None
    pin_until: float | None = None


@dataclass(frozen=True, slots=True)
class ContactRerouted:
    """The CRM's answer for a contact changed while it waits or is offered (its deal moved
    to another stage, the stage's person changed, the deal closed): whom it reaches first,
    the team that serves it and how long it waits for them (`Contact.preferred`, `team`,
    `first_wait`). `reason` is what the decision log says; `payload` holds keys to set in
    the contact's payload (the CRM's explanation, the deal it is about). `override`, when
    given, is whether a person's placement (a customer's pin) now routes it, which ratings
    leave out (`Contact.override`)."""

    contact_id: str
    preferred: tuple[str, ...]
    team: str | None
    first_wait: float | None = None
    reason: str = "routing changed"
    payload: Mapping[str, object] = field(default_factory=dict)
    override: bool | None = None


@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    manager_id: str
    busy: bool


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: tuple[str, str]


@dataclass(frozen=True, slots=True)
class PolicyReloaded:
    policy: RoutingPolicy


Event = (
    ContactArrived
    | ContactAbandoned
    | ManagerSaved
    | ManagerRemoved
    | PresenceSet
    | HeartbeatReceived
    | OfferAccepted
    | OfferDeclined
    | OfferFailed
    | WorkFinished
    | ContactReassigned
    | ContactTransferred
    | ContactRerouted
    | DeviceStateChanged
    | TimerFired
    | PolicyReloaded
)

# ---- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    manager_id: str
    score: float
    components: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShadowChoice:
    """Whom the shadow policy would have picked among the same candidates."""

    version: str
    strategy: str
    manager_id: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """Why a contact went where it went: the explanation a supervisor reads."""

    id: str
    at: float
    contact_id: str
    manager_id: str | None
    kind: str  # offer | override | escalate | transfer | reroute | end (a contact gone without a finish: why)
    policy_version: str
    strategy: str
    step: int
    pool: str
    candidates: tuple[Candidate, ...] = ()
    filtered: dict[str, list[str]] = field(default_factory=dict)
    filtered_counts: dict[str, int] = field(default_factory=dict)
    summary: str = ""
    shadow: ShadowChoice | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    manager_id: str
    at: float
    old: Presence
    new: Presence
    reason: str | None
    cause: str


# ---- commands -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferContact:
    contact: Contact
    manager: Manager
    expires_at: float
    decision: Decision


@dataclass(frozen=True, slots=True)
class WithdrawOffer:
    contact_id: str
    manager_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    key: tuple[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: tuple[str, str]


@dataclass(frozen=True, slots=True)
class SaveContact:
    contact: Contact


@dataclass(frozen=True, slots=True)
class SaveManager:
    manager: Manager


@dataclass(frozen=True, slots=True)
class LogDecision:
    decision: Decision


@dataclass(frozen=True, slots=True)
class LogTransition:
    transition: Transition


@dataclass(frozen=True, slots=True)
class NotifyManager:
    """Tell a manager's panel something (auto-pause banner, reassignment...)."""

    manager_id: str
    kind: str
    text: str


Command = (
    OfferContact
    | WithdrawOffer
    | StartTimer
    | CancelTimer
    | SaveContact
    | SaveManager
    | LogDecision
    | LogTransition
    | NotifyManager
)
