"""The supervisor's report and CSV exports for a past day: the day's rows are read by its
bounds, however many rows came after it (on every storage backend)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from api_fixtures import Running

import acd.web.reports
from acd.core.events import Decision, Transition
from acd.core.model import Channel, Contact, ContactStatus, Outcome, Presence
from acd.storage import Store


def _contact(contact_id: str, arrived_at: float, **fields: object) -> Contact:
    return Contact(id=contact_id, channel=Channel.WEB, arrived_at=arrived_at, **fields)  # type: ignore[arg-type]


def _offer(decision_id: str, contact_id: str, at: float) -> Decision:
    return Decision(decision_id, at, contact_id, "anna", "offer", "v1", "skills", 0, "all")


def _accept(at: float) -> Transition:
    return Transition("anna", at, Presence.OFFERED, Presence.BUSY, None, "accept")


async def _a_past_day_then_a_busier_week(store: Store, noon: float) -> None:
    """On the day: one contact answered by anna in 12 s and won, one abandoned. Then, over
    the following days, more contacts, offers and answers than the report's cap."""
    await store.create_contact(
        _contact(
            "won",
            noon,
            status=ContactStatus.FINISHED,
            assigned_to="anna",
            outcome=Outcome.WON,
            finished_at=noon + 300,
        )
    )
    await store.create_contact(_contact("gone", noon + 60, status=ContactStatus.ABANDONED))
    await store.apply([], [], [_offer("d-won", "won", noon + 5)], [_accept(noon + 12)])
    for i in range(8):
        later = noon + 86400 * (1 + i % 3) + i
        await store.create_contact(_contact(f"later-{i}", later, status=ContactStatus.ABANDONED))
        await store.apply([], [], [_offer(f"d-later-{i}", f"later-{i}", later + 1)], [_accept(later + 2)])


async def test_a_past_day_is_reported_whatever_came_after_it(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acd.web.reports, "MOST", 5)  # the 8 rows after the day are over it
    zone = ZoneInfo(running.server.deployment.tz)
    day = datetime.fromtimestamp(running.server.services.clock(), zone).date() - timedelta(days=30)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone).timestamp()
    await _a_past_day_then_a_busier_week(running.server.store, noon)

    status, report = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    assert (report["total"], report["answered"], report["abandoned"]) == (2, 1, 1)
    assert report["service_level"] == 0.5 and report["average_wait"] == 12.0
    anna = next(m for m in report["managers"] if m["id"] == "anna")
    assert (anna["offered"], anna["answered"], anna["won"]) == (1, 1, 1)
    assert [d["contacts"] for d in report["week"]] == [0, 0, 0, 0, 0, 0, 2]
    assert report["week"][-1] == {
        "date": str(day),
        "contacts": 2,
        "answered": 1,
        "abandoned": 1,
        "service_level": 0.5,
        "average_wait": 12.0,
        "longest_wait": 12.0,
        "abandonment": 0.5,
        "conversion": {"anna": 1.0},
        "won_amount": {},
    }

    async with running.session.get(
        running.url(f"/api/export/contacts.csv?date={day}"), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200
        rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert [(r["id"], r["status"], r["wait_seconds"]) for r in rows] == [
        ("won", "finished", "12.0"),
        ("gone", "abandoned", ""),
    ]

    status, text = await running.call("GET", f"/api/export/decisions.csv?date={day}", running.supervisor)
    assert status == 200
    assert [r["contact_id"] for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))] == ["won"]


async def test_contacts_and_logs_are_listed_up_to_an_exclusive_bound(store: Store) -> None:
    await _a_past_day_then_a_busier_week(store, 1_000_000.0)
    until = 1_000_000.0 + 86400  # the first rows after the day are at that second and after it

    assert [c.id for c in await store.list_contacts(until=until)] == ["gone", "won"]
    assert [c.id for c in await store.list_contacts(since=until, until=until + 4)] == ["later-3", "later-0"]
    assert [d.id for d in await store.list_decisions(since=1_000_000.0, until=until)] == ["d-won"]
    assert [t.at for t in await store.list_transitions(until=until)] == [1_000_012.0]
    assert len(await store.list_transitions(since=until, until=until + 86400)) == 3
