"""Pure: the CRM's values. Times are POSIX seconds (UTC) like everywhere else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Customer:
    """A company or a person. `phones` are E.164, `emails` lower case.

    `account_manager` is the customer's own manager (their project manager); `pinned_to`
    is a supervisor's pin, which beats every other rule when the customer calls.
    """

    id: str
    name: str = ""
    kind: str = "company"  # company | person
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    account_manager: str | None = None
    pinned_to: str | None = None
    criteria: Mapping[str, str] = field(default_factory=dict)  # the latest qualification answers
    note: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Deal:
    """A deal in the funnel. `owner` is the deal's (sales) owner, `stage_owner` the person
    serving its current stage (a logistics manager during delivery), if one was named.
    `segment` holds the criteria values the deal is rated under. `override` deals came from
    a contact placed by a supervisor; ratings leave them out. `last_activity` is the last
    time anyone moved the deal: ratings count a deal untouched for too long as lost."""

    id: str
    customer_id: str
    title: str = ""
    amount: float | None = None
    segment: Mapping[str, str] = field(default_factory=dict)
    owner: str | None = None
    stage: str = ""
    stage_owner: str | None = None
    status: DealStatus = DealStatus.OPEN
    opened_at: float = 0.0
    stage_since: float = 0.0
    last_activity: float = 0.0
    closed_at: float | None = None
    contact_id: str | None = None
    override: bool = False
    source: str = "live"  # live | import
    lost_reason: str = ""


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """One line of a customer's or deal's history: opened, stage, won, lost, owner,
    account_manager, pin."""

    at: float
    customer_id: str
    kind: str
    deal_id: str | None = None
    stage: str | None = None
    manager_id: str | None = None
    by: str = ""
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Vacation:
    """`manager_id` is away from `starts_at` (inclusive) to `ends_at` (exclusive);
    `substitute` takes their customers meanwhile."""

    id: int
    manager_id: str
    starts_at: float
    ends_at: float
    substitute: str | None = None
    note: str = ""

    def covers(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at
