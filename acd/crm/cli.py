"""Adapter: the CRM's commands for `acd` (ratings recompute, crm import/export).

acd ratings recompute [--config F] [--db URL] [--purpose P --price-tier T --temperature H]
acd crm import customers|deals FILE.csv      (a report of rejected rows on stderr)
acd crm export customers|deals > FILE.csv
acd crm erase CUSTOMER_ID --reason TEXT     (152-FZ / GDPR: the customer withdrew consent;
                                             exit 3: a file could not be cleaned)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acd.config import Deployment
    from acd.storage import Store

COMMANDS = ("ratings", "crm")


def add_commands(sub: Any, default_config: Path) -> None:
    p = sub.add_parser("ratings", help="managers' ratings from closed deals")
    rsub = p.add_subparsers(dest="ratings_command", required=True)
    r = rsub.add_parser("recompute", help="recompute every rating from the deals and print them")
    r.add_argument("--config", type=Path, default=default_config)
    r.add_argument("--db")
    for key in ("purpose", "price-tier", "temperature"):
        r.add_argument(f"--{key}", help="rate for this segment value")

    p = sub.add_parser("crm", help="CRM data: CSV import and export")
    csub = p.add_subparsers(dest="crm_command", required=True)
    i = csub.add_parser("import", help="import customers or historical deals from CSV")
    i.add_argument("what", choices=["customers", "deals"])
    i.add_argument("file", type=Path)
    i.add_argument("--config", type=Path, default=default_config)
    i.add_argument("--db")
    e = csub.add_parser("export", help="write customers or deals as CSV to standard output")
    e.add_argument("what", choices=["customers", "deals"])
    e.add_argument("--config", type=Path, default=default_config)
    e.add_argument("--db")
    x = csub.add_parser("erase", help="erase a customer's personal data (consent withdrawn); deals and counts stay")
    x.add_argument("customer_id")
    x.add_argument("--reason", required=True, help="why: the customer's request, its date or number (audited)")
    x.add_argument("--config", type=Path, default=default_config)
    x.add_argument("--db")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from acd.cli import deployment_and_store, problems
    from acd.config import ConfigError

    try:
        async with deployment_and_store(args.config, args.db) as (deployment, store):
            return await _command(args, deployment, store)
    except ConfigError as err:
        return problems(err)


async def _command(args: argparse.Namespace, deployment: Deployment, store: Store) -> int:
    from acd.crm import csvio
    from acd.crm.provider import DealRatings
    from acd.crm.service import CrmService, rating_params
    from acd.storage.crm import CrmStore

    managers = {m.id: m for m in deployment.managers}
    managers.update({m.id: m for m in await store.load_managers()})
    crm = CrmService(
        CrmStore(store), lambda: deployment, lambda: managers, DealRatings(rating_params(deployment), time.time())
    )
    if args.command == "ratings":
        stats = await crm.recompute()
        print(
            f"{stats['opportunities']} opportunities, {stats['managers']} managers, {stats['seconds']} s",
            file=sys.stderr,
        )
        segment = {
            k: v
            for k, v in (
                ("purpose", args.purpose),
                ("price_tier", args.price_tier),
                ("temperature", args.temperature),
            )
            if v
        }
        print(f"{'manager':<16} {'deals':>6} {'wins':>5} {'win rate':>9} {'90% interval':>15} {'value':>14}")
        for row in crm.leaderboard(segment):
            lo, hi = row["interval"]
            print(
                f"{row['manager_id']:<16} {row['deals']:>6} {row['wins']:>5} {row['win_rate']:>9.3f} "
                f"{f'[{lo:.2f}, {hi:.2f}]':>15} {row['expected_value']:>14,.0f}"
            )
        return 0
    if args.crm_command == "erase":
        return await _erase(crm.repo, args.customer_id, args.reason, deployment)
    if args.crm_command == "export":
        sys.stdout.write(await (crm.export_customers() if args.what == "customers" else crm.export_deals()))
        return 0
    try:
        text = csvio.decoded(args.file.read_bytes())
    except csvio.NotText as err:
        print(f"{args.file}: {err}", file=sys.stderr)
        return 2
    report = await (crm.import_customers(text) if args.what == "customers" else crm.import_deals(text))
    for r in report.rejected:
        print(f"{args.file}:{r.line}: {r.reason}", file=sys.stderr)
    for r in report.warnings:
        print(f"{args.file}:{r.line}: warning: {r.reason}", file=sys.stderr)
    print(f"imported {report.imported}, new customers {report.customers_created}, rejected {len(report.rejected)}")
    return 0


async def _erase(repo: Any, customer_id: str, reason: str, deployment: Deployment) -> int:
    """Exit status 1: refused; 3: erased, but a file could not be cleaned (named on stderr)."""
    from acd.crm.erasure import ErasureError, erase_customer
    from acd.telephony.traces import TelephonyFiles

    external = deployment.crm_external.kind if deployment.crm_external is not None else None
    try:
        done = await erase_customer(
            repo, customer_id, reason, "cli", time.time(), files=TelephonyFiles.of(deployment), external_crm=external
        )
    except ErasureError as err:
        print(f"{customer_id}: {err}" + (f" ({', '.join(err.live)})" if err.live else ""), file=sys.stderr)
        return 1
    what = "already erased" if done.already_erased else "erased"
    files = ", ".join(f"{n} {kind}" for kind, n in done.files.items())
    print(f"{customer_id}: {what}, {done.changed.get('contacts', 0)} contacts" + (f"; files: {files}" if files else ""))
    for k in done.kept:
        print(f"{customer_id}: kept {k.path}: {k.reason}", file=sys.stderr)
    if done.external:
        print(f"{customer_id}: {done.external} ({', '.join(done.external_refs) or 'no reference known here'})")
    return 3 if done.kept else 0
