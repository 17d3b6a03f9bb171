"""The supervisor's report checked against a small scripted day counted by hand, on every
storage backend: a Moscow office's day 30 days ago, with a contact of every channel, some
answered within the service-level threshold and some after it, abandoned ones, managers
with different loads (and one with none), an e-mail of 23:50 answered after midnight, a
pause running over midnight, and won and lost deals with amounts.

The day (Europe/Moscow), thresholds call 20 s, callback 60 s, web 300 s, e-mail 3600 s:

    c1 call      10:00:00  offered anna 10:00:02, accepted 10:00:10  wait 10    within   won
    c2 call      10:30:00  offered boris 10:30:05, accepted 10:30:40 wait 40    after    lost
    c3 web       11:00:00  offered anna 11:00:01, accepted 11:04:00  wait 240   within   won
    c4 email     12:00:00  offered boris 12:00:10, accepted 13:30:00 wait 5400  after    done
    c5 call      14:00:00  offered anna 14:00:02, missed 14:00:22               abandoned
    c6 callback  15:00:00  never offered                                        abandoned
    c7 email     23:50:00  offered anna 23:50:05, accepted 00:10:00  wait 1200  within   done

    answered 5, abandoned 2, service level 3 / 7 = 0.429, abandonment 2 / 7 = 0.286,
    average wait (10 + 40 + 240 + 5400 + 1200) / 5 = 1378.0, longest 5400;
    boris paused (lunch) from 23:00 the evening before to 09:30: 9 h 30 min of the day;
    anna paused 15:00-16:00 the day before: not the day's.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api_fixtures import Running

from acd.api.crm import CRM
from acd.core.events import Decision, Transition
from acd.core.model import Channel, Contact, ContactStatus, Outcome, Presence
from acd.storage import Store

P = Presence


def _at(day: Any, zone: ZoneInfo, hh: int, mm: int = 0, ss: int = 0, days: int = 0) -> float:
    d = day + timedelta(days=days)
    return datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=zone).timestamp()


async def store_contact(
    store: Store,
    n: int,
    cid: str,
    channel: Channel,
    arrived: float,
    status: ContactStatus,
    offer: tuple[str, float] | None = None,
    end: tuple[str, float] | None = None,  # (cause, at): accept or miss
    outcome: Outcome | None = None,
) -> None:
    manager = offer[0] if offer else None
    await store.create_contact(
        Contact(
            id=cid,
            channel=channel,
            arrived_at=arrived,
            seq=n,
            status=status,
            assigned_to=manager if status is ContactStatus.FINISHED else None,
            outcome=outcome,
            finished_at=end[1] + 600 if end and outcome else None,
        )
    )
    decisions = [Decision(f"d-{cid}", offer[1], cid, offer[0], "offer", "v1", "skills", 0, "all")] if offer else []
    transitions = []
    if offer and end:
        mid = offer[0]
        transitions.append(Transition(mid, offer[1], P.AVAILABLE, P.OFFERED, None, "offer"))
        if end[0] == "accept":
            transitions.append(Transition(mid, end[1], P.OFFERED, P.BUSY, None, "accept"))
            transitions.append(Transition(mid, end[1] + 600, P.BUSY, P.AVAILABLE, None, "finish"))
        else:
            transitions.append(Transition(mid, end[1], P.OFFERED, P.PAUSED, "missed", "miss"))
            transitions.append(Transition(mid, end[1] + 60, P.PAUSED, P.AVAILABLE, None, "rejoin"))
    await store.apply([], [], decisions, transitions)


async def scripted_day(store: Store, day: Any, zone: ZoneInfo) -> None:
    def at(hh: int, mm: int = 0, ss: int = 0, days: int = 0) -> float:
        return _at(day, zone, hh, mm, ss, days)

    n = 0

    async def contact(
        cid: str,
        channel: Channel,
        arrived: float,
        status: ContactStatus,
        offer: tuple[str, float] | None = None,
        end: tuple[str, float] | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        nonlocal n
        n += 1
        await store_contact(store, n, cid, channel, arrived, status, offer, end, outcome)

    # pauses: anna's of the day before, boris's over midnight into the day
    await store.apply(
        [],
        [],
        [],
        [
            Transition("anna", at(15, days=-1), P.AVAILABLE, P.PAUSED, "lunch", "pause"),
            Transition("anna", at(16, days=-1), P.PAUSED, P.AVAILABLE, None, "rejoin"),
            Transition("boris", at(23, days=-1), P.AVAILABLE, P.PAUSED, "lunch", "pause"),
            Transition("boris", at(9, 30), P.PAUSED, P.AVAILABLE, None, "rejoin"),
        ],
    )
    fin = ContactStatus.FINISHED
    await contact("c1", Channel.CALL, at(10), fin, ("anna", at(10, 0, 2)), ("accept", at(10, 0, 10)), Outcome.WON)
    await contact(
        "c2", Channel.CALL, at(10, 30), fin, ("boris", at(10, 30, 5)), ("accept", at(10, 30, 40)), Outcome.LOST
    )
    await contact("c3", Channel.WEB, at(11), fin, ("anna", at(11, 0, 1)), ("accept", at(11, 4)), Outcome.WON)
    await contact("c4", Channel.EMAIL, at(12), fin, ("boris", at(12, 0, 10)), ("accept", at(13, 30)), Outcome.DONE)
    await contact("c5", Channel.CALL, at(14), ContactStatus.ABANDONED, ("anna", at(14, 0, 2)), ("miss", at(14, 0, 22)))
    await contact("c6", Channel.CALLBACK, at(15), ContactStatus.ABANDONED)
    await contact(
        "c7", Channel.EMAIL, at(23, 50), fin, ("anna", at(23, 50, 5)), ("accept", at(0, 10, days=1)), Outcome.DONE
    )


async def _day(running: Running) -> tuple[Any, ZoneInfo]:
    zone = ZoneInfo(running.server.deployment.tz)
    assert running.server.deployment.tz == "Europe/Moscow"
    day = datetime.fromtimestamp(running.server.services.clock(), zone).date() - timedelta(days=30)
    await scripted_day(running.server.store, day, zone)
    return day, zone


async def _csv(running: Running, path: str) -> list[dict[str, str]]:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200
        body = await resp.read()
    assert body.startswith("\ufeff".encode())  # Excel reads UTF-8 by its BOM
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def test_the_scripted_day_counts_an_evening_contact_answered_after_midnight(running: Running) -> None:
    day, _ = await _day(running)
    status, r = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    assert (r["total"], r["answered"], r["abandoned"]) == (7, 5, 2)
    assert (r["service_level"], r["abandonment"], r["average_wait"]) == (0.429, 0.286, 1378.0)
    assert r["by_hour"][23]["email"] == 1 and r["sl_by_hour"][23]["service_level"] == 1.0
    anna = next(m for m in r["managers"] if m["id"] == "anna")
    boris = next(m for m in r["managers"] if m["id"] == "boris")
    assert (anna["offered"], anna["answered"], len(anna["missed"]), anna["won"], anna["done"]) == (4, 3, 1, 2, 1)
    assert (boris["offered"], boris["answered"], boris["won"], boris["lost"], boris["done"]) == (2, 2, 0, 1, 1)
    assert [d["contacts"] for d in r["week"]] == [0, 0, 0, 0, 0, 0, 7]
    assert r["week"][-1]["service_level"] == 0.429

    rows = {row["id"]: row for row in await _csv(running, f"/api/export/contacts.csv?date={day}")}
    assert [rows[c]["wait_seconds"] for c in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")] == [
        "10.0",
        "40.0",
        "240.0",
        "5400.0",
        "",
        "",
        "1200.0",
    ]
    assert rows["c7"]["answered_at"].startswith(f"{day + timedelta(days=1)}T00:10:00")
    assert rows["c7"]["answered_at"].endswith("+03:00")  # the site's time, not the server's UTC


async def test_a_pause_over_midnight_counts_its_part_of_the_day_and_the_day_before_is_not_the_days(
    running: Running,
) -> None:
    day, zone = await _day(running)
    status, r = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    managers = {m["id"]: m for m in r["managers"]}
    assert managers["boris"]["paused_seconds"] == 9.5 * 3600
    assert [(p["since"], p["seconds"]) for p in managers["boris"]["pauses"]] == [(_at(day, zone, 23, days=-1), 34200)]
    # anna's pauses of the day: the one after her missed offer (60 s), not yesterday's lunch
    assert [(p["reason"], p["seconds"]) for p in managers["anna"]["pauses"]] == [("missed", 60)]
    assert managers["anna"]["paused_seconds"] == 60


async def test_a_day_with_no_contacts(running: Running) -> None:
    day, _ = await _day(running)
    empty = day - timedelta(days=3)
    status, r = await running.call("GET", f"/api/reports/day?date={empty}", running.supervisor)
    assert status == 200
    assert (r["total"], r["answered"], r["abandoned"]) == (0, 0, 0)
    assert (r["service_level"], r["abandonment"], r["average_wait"]) == (None, None, None)
    assert await _csv(running, f"/api/export/contacts.csv?date={empty}") == []


async def test_each_manager_s_speed_of_response_and_the_longest_wait(running: Running) -> None:
    day, _ = await _day(running)
    status, r = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    assert r["longest_wait"] == 5400.0
    managers = {m["id"]: m for m in r["managers"]}
    # offer to accept: anna 8, 239 and 1195 s; boris 35 and 5390 s
    assert (managers["anna"]["response_average"], managers["anna"]["response_longest"]) == (480.7, 1195.0)
    assert (managers["boris"]["response_average"], managers["boris"]["response_longest"]) == (2712.5, 5390.0)
    assert "vera" not in managers  # no contacts, no row of zeros


async def closed_deals(running: Running, day: Any, zone: ZoneInfo) -> None:
    """anna wins 150 000 and 50 000 on the day; boris wins 300 000 three days before it and
    loses one on the day, and won 100 000 in the week before; vera (no contacts at all) won
    80 000 in the week before only; an open deal and a deal won the day after do not count."""
    from acd.crm.model import Customer, Deal, DealStatus

    def deal(n: str, owner: str, amount: float, at: float, status: DealStatus = DealStatus.WON) -> Deal:
        return Deal(n, "k1", amount=amount, owner=owner, status=status, opened_at=at - 3600, closed_at=at)

    def at(hh: int, days: int = 0) -> float:
        return _at(day, zone, hh, days=days)

    crm = running.server.app[CRM]
    await crm.repo.save_customers_and_deals(
        [Customer(id="k1", name="ООО «Ромашка»")],
        [
            deal("a1", "anna", 150_000, at(11)),
            deal("a2", "anna", 50_000, at(16)),
            deal("b1", "boris", 300_000, at(12, days=-3)),
            deal("b2", "boris", 90_000, at(17), DealStatus.LOST),
            deal("b3", "boris", 100_000, at(12, days=-9)),
            deal("v1", "vera", 80_000, at(10, days=-7)),
            deal("a3", "anna", 999_000, at(10, days=1)),
            Deal("o1", "k1", amount=500_000, owner="anna", opened_at=at(9)),
        ],
        [],
    )


async def test_sales_leaders_of_the_day_and_the_week_and_their_trend(running: Running) -> None:
    day, zone = await _day(running)
    await closed_deals(running, day, zone)
    status, r = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    rows = [(x["id"], x["day"], x["week"], x["previous"], x["change"]) for x in r["leaders"]]
    assert rows == [
        (
            "boris",
            {"won": 0, "amount": 0, "lost": 1},
            {"won": 1, "amount": 300_000, "lost": 1},
            {"won": 1, "amount": 100_000, "lost": 0},
            2.0,
        ),
        (
            "anna",
            {"won": 2, "amount": 200_000, "lost": 0},
            {"won": 2, "amount": 200_000, "lost": 0},
            {"won": 0, "amount": 0, "lost": 0},
            None,
        ),
        (
            "vera",
            {"won": 0, "amount": 0, "lost": 0},
            {"won": 0, "amount": 0, "lost": 0},
            {"won": 1, "amount": 80_000, "lost": 0},
            -1.0,
        ),
    ]
    assert r["leaders"][1]["name"] != "anna"  # the manager's name, as the tables show it
    assert [w["won_amount"] for w in r["week"]] == [{}, {}, {}, {"boris": 300_000}, {}, {}, {"anna": 200_000}]
