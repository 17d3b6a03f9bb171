"""Pure: who a known customer's new contact should reach first.

The core's escalation steps do the waiting (preferred → team → skill → any); this module
only fills the contact's `preferred` and `team` from CRM data, and says why.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from acd.crm.model import Customer, Deal, DealStatus, Vacation

MAX_SUBSTITUTE_HOPS = 5


@dataclass(frozen=True, slots=True)
class StageRule:
    """How a funnel stage routes repeat customers (from the deployment's `funnel_stages`).

    route_to: `owner`: the person serving the stage, else the deal's owner, else the
    customer's account manager; `team`: the person serving the stage if the deal names one,
    else the stage's team at once.
    """

    name: str
    team: str
    route_to: str = "owner"
    wait: float | None = None  # seconds to wait for the stage's person before the team


@dataclass(frozen=True, slots=True)
class RepeatRouting:
    preferred: tuple[str, ...]
    team: str | None
    deal_id: str | None
    reason: str
    override: bool = False
    wait: float | None = None  # how long the contact waits for `preferred` (the stage's `wait`)


def away(manager_id: str, vacations: Iterable[Vacation], now: float) -> Vacation | None:
    return next((v for v in vacations if v.manager_id == manager_id and v.covers(now)), None)


def stand_in(
    manager_id: str, vacations: Sequence[Vacation], now: float, serving: Collection[str] | None = None
) -> tuple[str | None, list[str]]:
    """The person who serves `manager_id`'s customers now: themself unless on vacation,
    else their substitute (following substitutes who are away too, at most
    `MAX_SUBSTITUTE_HOPS`, never in a circle). A substitute who is not among `serving`
    (deactivated, or gone from the roster) serves nobody. Returns (who, the chain of notes)."""
    seen = {manager_id}
    who: str | None = manager_id
    notes: list[str] = []
    for _ in range(MAX_SUBSTITUTE_HOPS):
        assert who is not None
        v = away(who, vacations, now)
        if v is None:
            if serving is not None and who not in serving:
                notes.append(f"{who} inactive")
                return None, notes
            return who, notes
        notes.append(f"{who} on vacation" + (f", substitute {v.substitute}" if v.substitute else ", no substitute"))
        if v.substitute is None or v.substitute in seen:
            return None, notes
        seen.add(v.substitute)
        who = v.substitute
    return None, notes


def _moved(d: Deal) -> tuple[float, float, str]:
    return (d.last_activity, d.stage_since, d.id)


def open_deal(deals: Iterable[Deal]) -> Deal | None:
    """The open deal a call is most likely about: the one that moved most recently."""
    candidates = [d for d in deals if d.status is DealStatus.OPEN]
    return max(candidates, key=_moved, default=None)


MAX_OTHERS_NAMED = 3


def _the_others(others: Sequence[Deal]) -> str:
    """What a reason says of the open deals a contact was not routed by (most recently moved first)."""
    others = sorted(others, key=_moved, reverse=True)
    named = ", ".join(f"{d.id} in {d.stage!r}" for d in others[:MAX_OTHERS_NAMED])
    more = f" and {len(others) - MAX_OTHERS_NAMED} more" if len(others) > MAX_OTHERS_NAMED else ""
    return f"1 of {len(others) + 1} open deals, the most recently moved; also open: {named}{more}"


def route_repeat(
    customer: Customer,
    deals: Iterable[Deal],
    stages: Mapping[str, StageRule],
    vacations: Sequence[Vacation],
    now: float,
    serving: Collection[str] | None = None,
) -> RepeatRouting:
    """Rule, first match wins:

    1. a supervisor's pin: the pinned manager first (marked override, so ratings leave out
       what the pin brings them);
    2. an open deal: by its stage's `route_to` (see `StageRule`), with the stage's team as
       `team`; of several, the one moved most recently (`open_deal`), and the reason says
       "1 of N open deals" and names the others;
    3. no open deal: the customer's account manager, if any.

    Anyone on vacation is replaced by their substitute; a pin is followed by the rule-2/3
    person, so a pinned customer still reaches their usual people when the pin is away.
    `serving`, when given, holds the managers who take contacts at all: anyone else (a
    deactivated manager, one gone from the roster) is passed over, and says so. A pin to
    them no longer holds (nor marks the contact as an override); a stage routed to its
    owner falls back from the stage's person to the deal's owner, then to the account
    manager, as if the one before were not named.

    Example: a deal in `delivery` (team logistics) whose stage owner egor
    is on vacation with substitute fedor gives preferred=("fedor",), team="logistics".
    """
    deals = list(deals)
    deal = open_deal(deals)
    others = [d for d in deals if d.status is DealStatus.OPEN and deal is not None and d.id != deal.id]
    people: list[str] = []
    reasons: list[str] = []
    team: str | None = None
    gone: list[str] = []

    def first_serving(*named: str | None) -> str | None:
        for m in named:
            if not m:
                continue
            if serving is None or m in serving:
                return m
            if m not in gone:
                gone.append(m)
        return None

    if customer.pinned_to:
        if first_serving(customer.pinned_to):
            people.append(customer.pinned_to)
            reasons.append(f"pinned to {customer.pinned_to}")
        else:
            reasons.append(f"pinned to {customer.pinned_to}, who is inactive: the pin is passed over")
            gone.clear()
    if deal is not None:
        rule = stages.get(deal.stage)
        route_to = rule.route_to if rule else "owner"
        team = rule.team if rule else None
        if route_to != "team":
            person = first_serving(deal.stage_owner, deal.owner, customer.account_manager)
        else:
            person = first_serving(deal.stage_owner)
        if person:
            people.append(person)
        reasons.append(
            f"open deal {deal.id} in stage {deal.stage!r} → {route_to}"
            + (f" {person}" if person else "")
            + (f" (passing over inactive {', '.join(gone)})" if gone else "")
            + (f", team {team}" if team else "")
            + (f" ({_the_others(others)})" if others else "")
        )
    elif customer.account_manager:
        if first_serving(customer.account_manager):
            people.append(customer.account_manager)
            reasons.append(f"account manager {customer.account_manager}")
        else:
            reasons.append(f"account manager {customer.account_manager} is inactive")
    preferred: list[str] = []
    for person in people:
        who, notes = stand_in(person, vacations, now, serving)
        reasons.extend(notes)
        if who is not None and who not in preferred:
            preferred.append(who)
    rule = stages.get(deal.stage) if deal is not None else None
    return RepeatRouting(
        preferred=tuple(preferred),
        team=team,
        wait=rule.wait if rule is not None and preferred else None,
        deal_id=deal.id if deal else None,
        reason="; ".join(reasons) or "known customer, nobody assigned",
        override=bool(customer.pinned_to) and bool(preferred) and preferred[0] == customer.pinned_to,
    )
