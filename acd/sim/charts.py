"""Adapter: the simulator's table as charts (`acd simulate --charts DIR`), drawn by matplotlib.

Two files per run, SVG (text kept as text, so it can be searched and read aloud) or PNG:
`policies.<fmt>`, one panel per measure with the policies side by side and Erlang C's
figure as a dashed line where it has one; `managers.<fmt>`, the contacts each manager took
under each policy (fairness at a glance).
"""

from __future__ import annotations

import math
from pathlib import Path

from acd.sim.engine import Result
from acd.sim.report import erlang_reference
from acd.sim.scenario import Scenario

FORMATS = ("svg", "png")


class ChartsUnavailable(RuntimeError):
    """matplotlib is not installed (it is the `charts` extra)."""


def write_charts(s: Scenario, results: list[Result], out_dir: Path, fmt: str = "svg") -> list[Path]:
    """Draw the run's charts into `out_dir` (created if needed); return the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a server
        from matplotlib import pyplot as plt
    except ImportError as err:
        raise ChartsUnavailable("charts need matplotlib: pip install 'acd[charts]'") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names = [r.strategy for r in results]
    ref = erlang_reference(s)
    with plt.rc_context({"svg.fonttype": "none", "font.size": 9}):
        panels: list[tuple[str, list[float], float | None]] = [
            ("Average speed of answer, calls (s)", [r.asa for r in results], ref.asa if ref else None),
            (
                f"Answered within {s.service_level_seconds:g} s (%)",
                [100 * r.service_level for r in results],
                100 * ref.service_level if ref else None,
            ),
            ("Abandoned calls (%)", [100 * r.abandonment for r in results], None),
            ("Expected revenue (millions)", [r.expected_revenue / 1e6 for r in results], None),
        ]
        fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained")
        fig.suptitle(f"{s.name}: {s.days} day(s), seed {s.seed}")
        for ax, (title, values, reference) in zip(axes.flat, panels, strict=True):
            bars = ax.bar(names, values, color="#4c78a8")
            ax.bar_label(bars, fmt="%.1f")
            if reference is not None and math.isfinite(reference):
                ax.axhline(reference, color="#e45756", linestyle="--", label=f"Erlang C {reference:.1f}")
                ax.legend(loc="best")
            ax.set_title(title)
            ax.tick_params(axis="x", labelrotation=30)
        written.append(_save(fig, out_dir / f"policies.{fmt}", plt))

        managers = [m.id for m in s.managers]
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(managers)), 4.5), layout="constrained")
        width = 0.8 / max(1, len(results))
        for i, r in enumerate(results):
            xs = [j + i * width for j in range(len(managers))]
            ax.bar(xs, [r.taken.get(m, 0) for m in managers], width, label=r.strategy)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(managers))], managers)
        ax.set_ylabel("contacts taken")
        ax.set_title("Contacts per manager under each policy")
        ax.legend(ncols=min(3, len(results)))
        written.append(_save(fig, out_dir / f"managers.{fmt}", plt))
    return written


def _save(fig: object, path: Path, plt: object) -> Path:
    fig.savefig(path)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[attr-defined]
    return path
