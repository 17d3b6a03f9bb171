"""Adapter: `acd simulate [SCENARIO]` (also `python -m acd.sim`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "example.yaml"
CONFIG = Path(__file__).resolve().parents[2] / "config" / "acd.example.yaml"
ALL = ("best-match", "leastrecent", "fewestcalls", "random", "rrmemory", "linear")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acd simulate", description="what-if simulation of routing policies")
    parser.add_argument("scenario", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--days", type=int, help="override the scenario's number of days")
    parser.add_argument("--policies", help="comma-separated, e.g. best-match,leastrecent")
    parser.add_argument("--backtest", type=Path, metavar="CSV", help="replay past contacts instead of a scenario")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the deployment (managers, rules) for --backtest")
    parser.add_argument("--charts", type=Path, metavar="DIR", help="also draw the table as charts into DIR")
    parser.add_argument("--chart-format", choices=("svg", "png"), default="svg", help="charts as SVG (default) or PNG")
    args = parser.parse_args(argv)
    if args.backtest:
        return backtest(args.backtest, args.config, args.policies)
    return run(args.scenario, args.seed, args.days, args.policies, args.charts, args.chart_format)


def backtest(csv_path: Path, config: Path, policies: str | None) -> int:
    from acd.config import ConfigError, load_deployment
    from acd.crm.csvio import NotText, decoded
    from acd.sim import backtest as bt

    try:
        deployment = load_deployment(config)
        text = decoded(csv_path.read_bytes())  # an export from Excel, often Windows-1251
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except (OSError, NotText) as err:
        print(f"{csv_path}: {err}", file=sys.stderr)
        return 1
    managers = list(deployment.managers)
    parsed = bt.parse(text, [c.name for c in deployment.criteria], [m.id for m in managers], deployment.tz)
    for line, reason in parsed.rejected:
        print(f"{csv_path}: line {line}: {reason}", file=sys.stderr)
    if not parsed.contacts:
        print(f"{csv_path}: no contact to replay", file=sys.stderr)
        return 1
    names = [p.strip() for p in (policies or ",".join(ALL)).split(",") if p.strip()]
    results = [bt.replay(parsed.contacts, managers, deployment.policy, name) for name in names]
    print(bt.report(parsed.contacts, results, managers))
    return 0


def run(
    path: Path,
    seed: int | None,
    days: int | None,
    policies: str | None,
    charts: Path | None = None,
    chart_format: str = "svg",
) -> int:
    from acd.config import ConfigError, load_deployment
    from acd.core.policy import RoutingPolicy
    from acd.sim.engine import simulate
    from acd.sim.report import table
    from acd.sim.scenario import SpecError, load_scenario

    try:
        scenario = load_scenario(path)
        updates: dict[str, object] = {}
        if seed is not None:
            updates["seed"] = seed
        if days is not None:
            updates["days"] = days
        if policies:
            updates["policies"] = [p.strip() for p in policies.split(",") if p.strip()]
        scenario = type(scenario).model_validate({**scenario.model_dump(), **updates})
        policy = RoutingPolicy()
        if scenario.config:
            policy = load_deployment((path.parent / scenario.config).resolve()).policy
    except SpecError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    results = simulate(scenario, policy)
    print(table(scenario, results))
    if charts is not None:
        from acd.sim.charts import ChartsUnavailable, write_charts

        try:
            for written in write_charts(scenario, results, charts, chart_format):
                print(f"chart: {written}")
        except (ChartsUnavailable, OSError) as err:
            print(f"charts: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
