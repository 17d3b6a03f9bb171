"""The supervisor's reports read only the columns their figures need, on every storage
backend: a month of a busy office is tens of thousands of rows, and decoding each routing
decision's explanation and each contact's JSON was most of a month report's time (bench.reports)."""

from __future__ import annotations

import sqlalchemy as sa
from api_fixtures import Running
from storage_fixtures import Backend
from test_reports_week import _get, _week

from acd.core.events import Decision, Transition
from acd.core.model import Channel, Contact, ContactStatus, Outcome, Presence
from acd.storage import Store

P = Presence


async def test_the_reports_decode_no_explanation_nor_contact_json(running: Running, backend: Backend) -> None:
    monday, _ = await _week(running)  # its Friday e-mail is answered the Monday after: read late
    asked = f"date={monday}"
    reports = [f"/api/reports/day?{asked}&period={p}" for p in ("day", "week", "month")]
    exports = [f"/api/export/{name}.csv?{asked}&period=month" for name in ("summary", "managers")]

    async def figures() -> list[object]:
        out: list[object] = []
        for path in reports:
            status, body = await running.call("GET", path, running.supervisor)
            assert status == 200, body
            out.append(body)
        return out + [await _get(running, path) for path in exports]

    before = await figures()
    assert before[1]["answered"] == 4  # type: ignore[index]  # the week, the late e-mail among them
    # JSON no reader could decode in every column the figures do not need
    async with backend.raw() as conn:
        await conn.execute(sa.text("UPDATE decisions SET candidates = '{', filtered = '{', filtered_counts = '{'"))
        await conn.execute(
            sa.text(
                "UPDATE contacts SET criteria = '{', payload = '{', required_skills = '[', preferred = '[',"
                " declined_by = '['"
            )
        )
    assert await figures() == before


async def test_the_reports_rows_are_the_whole_rows_columns_in_the_same_order(store: Store) -> None:
    t0 = 1_000_000.0
    for n, (cid, status, outcome) in enumerate(
        [
            ("a", ContactStatus.FINISHED, Outcome.WON),
            ("b", ContactStatus.ABANDONED, None),
            ("c", ContactStatus.WAITING, None),
        ]
    ):
        await store.create_contact(
            Contact(
                id=cid,
                channel=Channel.EMAIL if n else Channel.CALL,
                arrived_at=t0 + n,
                customer_name=f"Иван {n}",
                status=status,
                assigned_to="anna" if outcome else None,
                outcome=outcome,
                criteria={"purpose": "purchase"},
                payload={"note": "x"},
            )
        )

    def decision(n: int, cid: str, at: float, manager: str | None, kind: str = "offer") -> Decision:
        return Decision(f"d{n}", at, cid, manager, kind, "v1", "skills", 0, "all", summary="why")

    decisions = [
        decision(1, "a", t0 + 5, "anna"),
        decision(2, "b", t0 + 5, "boris"),  # the same second: the later logged comes first
        decision(3, "b", t0 + 6, "anna", "override"),  # a supervisor's: no offer
        decision(4, "c", t0 + 7, None, "escalate"),  # nobody named
        decision(5, "c", t0 + 8, "vera"),
    ]
    transitions = [
        Transition("anna", t0 + 5, P.AVAILABLE, P.OFFERED, None, "offer"),
        Transition("anna", t0 + 5, P.OFFERED, P.BUSY, None, "accept"),
        Transition("boris", t0 + 9, P.OFFERED, P.PAUSED, "missed", "miss"),
    ]
    await store.apply([], [], decisions, transitions)
    until = t0 + 100

    whole = await store.list_contacts(since=t0, until=until)
    assert [tuple(c) for c in await store.report_contacts(t0, until, 100)] == [
        (c.id, c.seq, c.channel, c.arrived_at, c.status, c.assigned_to, c.outcome, c.customer_name) for c in whole
    ]
    assert [c.id for c in await store.report_contacts(t0 + 1, t0 + 2, 100)] == ["b"]
    offers = [
        (d.at, d.contact_id, d.manager_id, d.kind)
        for d in await store.list_decisions(since=t0, until=until)
        if d.manager_id is not None and d.kind != "override"
    ]
    assert [tuple(d) for d in await store.report_offers(t0, until, 100)] == offers
    assert [d.contact_id for d in await store.report_offers(t0, until, 100)] == ["c", "b", "a"]
    assert [tuple(d) for d in await store.offers_of_contacts(["b", "c", "b"], t0 + 5)] == [
        (t0 + 5, "b", "boris", "offer"),
        (t0 + 8, "c", "vera", "offer"),
    ]
    changes = await store.report_transitions(t0, until, 100)
    assert [tuple(c) for c in changes] == [
        (t.manager_id, t.at, t.new, t.reason, t.cause) for t in await store.list_transitions(since=t0, until=until)
    ]
    assert [(c.cause, type(c.new)) for c in changes] == [("miss", P), ("accept", P), ("offer", P)]
    assert len(await store.report_transitions(t0, until, 2)) == 2
