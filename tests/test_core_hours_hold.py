"""Holding contacts outside working hours (policy.hold_outside_hours): a lead that comes at
night waits at its step for the people of that step, and the step's timeout counts from
the next opening; without the setting, empty steps are skipped at once, night or day."""

from __future__ import annotations

from datetime import time

from acd.core import events as ev
from acd.core.hours import Calendar, Schedule
from acd.core.model import Presence
from acd.core.policy import EscalationStep, Pool
from tests.core_helpers import T0, Harness, contact, harness, manager

STEPS = (
    EscalationStep(Pool.PREFERRED, 20),
    EscalationStep(Pool.TEAM, 20),
    EscalationStep(Pool.SKILL, 30),
    EscalationStep(Pool.ANY, None),
)
# sales works Monday to Friday, 09:00-18:00 UTC; the night shift's team has no hours (always open)
SALES = Schedule(tz="UTC", week={day: ((time(9), time(18)),) for day in range(5)})
CALENDAR = Calendar(tz="UTC", teams={"sales": SALES})
NIGHT = T0 + 11 * 3600  # T0 is a Wednesday, 11:06 UTC: this is 22:06, sales closed
MORNING = SALES.next_open(NIGHT)  # Thursday 09:00


def office(hold: bool) -> Harness:
    """The deal owner and a colleague in sales, both gone home; a night-shift manager on line."""
    # no heartbeats in these tests: the inactivity rule would pause the night shift overnight
    h = harness(steps=STEPS, calendar=CALENDAR, hold_outside_hours=hold, inactivity_pause=0)
    h.now = NIGHT
    h.send(ev.ManagerSaved(manager("owner", team="sales")))
    h.send(ev.ManagerSaved(manager("mate", team="sales")))
    h.join(manager("night", team="support"))
    return h


def test_the_morning_is_in_the_same_week() -> None:
    assert MORNING is not None and 0 < MORNING - NIGHT < 12 * 3600


def test_without_the_setting_a_night_lead_goes_to_whoever_is_there() -> None:
    h = office(hold=False)
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") == "night"


def test_a_night_lead_waits_for_its_deal_owner_until_the_morning() -> None:
    h = office(hold=True)
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") is None and h.board.contacts["c1"].step == 0
    assert MORNING is not None
    h.tick(MORNING - NIGHT - 60)  # the whole night: nothing escalates
    assert h.offered_to("c1") is None and h.board.contacts["c1"].step == 0
    h.tick(60)
    h.send(ev.PresenceSet("owner", Presence.AVAILABLE))
    assert h.offered_to("c1") == "owner"
    assert h.last_offer().decision.pool == "preferred"


def test_the_step_timeout_counts_from_the_opening() -> None:
    """Nobody from sales comes in: 20 s after opening the contact widens as by day, and the
    night-shift manager (outside sales, in the ring of everyone with the skills) gets it."""
    h = office(hold=True)
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert MORNING is not None
    h.tick(MORNING - NIGHT + 19)
    assert h.offered_to("c1") is None and h.board.contacts["c1"].step == 0
    h.tick(1)  # the first step times out; sales has nobody staffed, so the rest go at once
    assert h.offered_to("c1") == "night"
    assert h.last_offer().decision.pool == "skill"


def test_someone_of_the_step_on_line_at_night_is_offered_at_once() -> None:
    h = office(hold=True)
    h.send(ev.PresenceSet("owner", Presence.AVAILABLE))
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") == "owner"


def test_a_ring_that_can_hold_nobody_is_not_held() -> None:
    """A new customer has no deal owner: the preferred ring is skipped at once; the team
    ring holds the lead for sales till the morning."""
    h = office(hold=True)
    h.arrive(contact("c1", team="sales"))
    assert h.offered_to("c1") is None and h.board.contacts["c1"].step == 1


def test_a_team_without_working_hours_is_never_held() -> None:
    h = office(hold=True)
    h.arrive(contact("c1", preferred=("owner",), team="support"))
    assert h.offered_to("c1") == "night"


def test_after_a_restart_in_the_night_the_contact_is_still_held() -> None:
    h = office(hold=True)
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    stored = h.board.contacts["c1"]
    assert MORNING is not None
    restarted = office(hold=True)
    restarted.now = NIGHT + 4 * 3600
    restarted.record(restarted.board.restore([stored], list(restarted.board.managers.values()), restarted.now))
    assert restarted.offered_to("c1") is None and restarted.board.contacts["c1"].step == 0
    assert restarted.timers[("escalate", "c1")] == MORNING + 20
