"""`acd simulate`: the real core on a virtual clock, compared with the app_queue baselines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acd.config import load_deployment
from acd.sim.engine import simulate
from acd.sim.erlang import erlang_c
from acd.sim.report import erlang_reference, table
from acd.sim.scenario import SpecError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "scenarios" / "example.yaml"


def example_policy():  # type: ignore[no-untyped-def]
    return load_deployment(ROOT / "config" / "acd.example.yaml", environ={}).policy


def test_erlang_c_matches_the_textbook_figures() -> None:
    e = erlang_c(100 / 3600, 180, 7, 20)
    assert e.traffic == pytest.approx(5.0)
    assert e.p_wait == pytest.approx(0.3241, abs=1e-3)
    assert e.asa == pytest.approx(29.17, abs=0.05)
    assert erlang_c(1 / 60, 300, 4, 20).asa == float("inf")  # 5 Erlangs on 4 agents never keep up


def test_the_same_seed_gives_the_same_table() -> None:
    s = load_scenario(EXAMPLE).model_copy(update={"days": 1, "policies": ["best-match", "random"]})
    first = table(s, simulate(s, example_policy()))
    second = table(s, simulate(s, example_policy()))
    assert first == second
    other = s.model_copy(update={"seed": s.seed + 1})
    assert table(other, simulate(other, example_policy())) != first


def test_best_match_earns_more_than_every_baseline_with_waiting_near_erlang_c() -> None:
    s = load_scenario(EXAMPLE)
    results = {r.strategy: r for r in simulate(s, example_policy())}
    best = results.pop("best-match")
    assert results, "the example compares best-match with the baselines"
    for name, r in results.items():
        assert best.expected_revenue > 1.04 * r.expected_revenue, name
    ref = erlang_reference(s)
    assert ref is not None
    assert abs(best.asa - ref.asa) < max(5.0, 0.5 * ref.asa)
    assert best.calls == results["linear"].calls  # the same stream of contacts for every column


def test_a_broken_scenario_names_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace('per_hour: {"08-20": 4}', 'per_hour: {"8 to 20": 4}'),
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as err:
        load_scenario(bad)
    assert any(p.startswith(f"{bad}: channels.web.per_hour") for p in err.value.problems), err.value.problems


def test_acd_simulate_with_no_argument_prints_the_table_for_the_example() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acd.cli", "simulate", "--days", "1", "--policies", "best-match,leastrecent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "best-match" in out.stdout and "leastrecent" in out.stdout and "Erlang C" in out.stdout
    assert "expected revenue" in out.stdout


def test_charts_draw_every_policy_as_svg_with_text_and_as_png(tmp_path: Path) -> None:
    from xml.etree import ElementTree

    from acd.sim.charts import write_charts

    s = load_scenario(EXAMPLE).model_copy(update={"days": 1, "policies": ["best-match", "rrmemory"]})
    results = simulate(s, example_policy())
    svgs = write_charts(s, results, tmp_path / "svg")
    assert [p.name for p in svgs] == ["policies.svg", "managers.svg"]
    policies = ElementTree.parse(svgs[0]).getroot()
    assert policies.tag.endswith("svg")
    text = " ".join(t.text or "" for t in policies.iter() if t.tag.endswith("text"))
    assert "best-match" in text and "rrmemory" in text and "Erlang C" in text
    managers = " ".join(t.text or "" for t in ElementTree.parse(svgs[1]).getroot().iter() if t.tag.endswith("text"))
    assert all(m.id in managers for m in s.managers)
    pngs = write_charts(s, results, tmp_path / "png", "png")
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    with pytest.raises(ValueError, match="svg, png"):
        write_charts(s, results, tmp_path, "gif")


def test_acd_simulate_draws_charts_on_request(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "acd.cli",
            "simulate",
            "--days",
            "1",
            "--policies",
            "best-match",
            "--charts",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"chart: {tmp_path / 'policies.svg'}" in out.stdout
    assert (tmp_path / "managers.svg").stat().st_size > 1000
