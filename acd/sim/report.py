"""Pure: the side-by-side table of a simulation, with Erlang C as the reference."""

from __future__ import annotations

import math

from acd.core.model import Channel
from acd.sim.engine import Result, fairness
from acd.sim.erlang import ErlangC, erlang_c
from acd.sim.scenario import Scenario, hours


def erlang_reference(s: Scenario) -> ErlangC | None:
    """Erlang C for the calls alone over the hours they arrive, with the managers on shift
    then (they also answer web leads and e-mail, so it is a lower bound on waiting)."""
    load = s.channels.get(Channel.CALL)
    if load is None:
        return None
    rates = load.rates()
    open_hours = [h for h, r in enumerate(rates) if r > 0]
    if not open_hours:
        return None
    per_s = sum(rates[h] for h in open_hours) / len(open_hours) / 3600
    staffed = 0.0
    for h in open_hours:
        for m in s.managers:
            start, end = hours(m.shift)
            on_break = any(b0 <= h + 0.5 < b1 for b0, b1 in (hours(b) for b in m.breaks))
            staffed += start <= h + 0.5 < end and not on_break
    agents = staffed / len(open_hours)
    return erlang_c(per_s, load.handle_minutes * 60, agents, s.service_level_seconds)


def table(s: Scenario, results: list[Result]) -> str:
    ref = erlang_reference(s)
    rows: list[tuple[str, list[str], str]] = [
        ("calls", [str(r.calls) for r in results], ""),
        (
            "ASA calls, s",
            [f"{r.asa:.1f}" for r in results],
            f"{ref.asa:.1f}" if ref and math.isfinite(ref.asa) else "-",
        ),
        (
            f"answered in {s.service_level_seconds:g} s",
            [f"{r.service_level:.1%}" for r in results],
            f"{ref.service_level:.1%}" if ref else "-",
        ),
        ("abandoned calls", [f"{r.abandonment:.1%}" for r in results], ""),
        ("wait web/e-mail, min", [f"{r.other_wait / 60:.1f}" for r in results], ""),
        ("occupancy", [f"{r.occupancy:.1%}" for r in results], f"{ref.traffic / ref.agents:.1%}" if ref else "-"),
        ("fairness max/min", [_ratio(fairness(r, s)) for r in results], ""),
        ("missed offers", [str(r.missed_offers) for r in results], ""),
        ("won deals", [str(r.won) for r in results], ""),
        ("revenue", [_money(r.revenue) for r in results], ""),
        ("expected revenue", [_money(r.expected_revenue) for r in results], ""),
    ]
    heads = [r.strategy for r in results] + ["Erlang C"]
    width0 = max(len(name) for name, _, _ in rows)
    widths = [max(len(h), *(len(v[i]) for _, v, _ in rows)) for i, h in enumerate(heads[:-1])] + [8]
    lines = [f"{s.name}: {s.days} day(s), seed {s.seed}", ""]
    lines.append(" " * width0 + "  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for name, values, reference in rows:
        cells = [*values, reference]
        lines.append(name.ljust(width0) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def _ratio(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _money(x: float) -> str:
    return f"{x:,.0f}".replace(",", " ")
