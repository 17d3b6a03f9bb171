"""Adapter: the `acd` command line (serve, check-config, token create/revoke, user, backup, restore)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from acd import logs

if TYPE_CHECKING:
    from acd.config import ConfigError, Deployment
    from acd.storage import Store
from acd.crm import cli as crm_cli
from acd.telephony import cli as telephony_cli

DEFAULT_CONFIG = Path("config/acd.example.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acd", description="ACD / IVR server")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--db", help="database URL (default: SQLite in ./data)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--demo", action="store_true", help="demo managers start available")
    p.add_argument(
        "--cluster",
        action="store_true",
        default=os.environ.get("ACD_CLUSTER") == "1",
        help="one of several nodes on one PostgreSQL (docs/deployment.md)",
    )
    p.add_argument("--log-json", action="store_true", default=os.environ.get("ACD_LOG_FORMAT") == "json")

    p = sub.add_parser("check-config", help="validate a deployment file and its IVR flows")
    p.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG)

    p = sub.add_parser("token", help="API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new bearer token")
    t.add_argument("--role", choices=["admin", "supervisor", "manager"], required=True)
    t.add_argument("--manager")
    t.add_argument("--label", default="")
    t.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    t.add_argument("--db")
    t = tsub.add_parser("revoke", help="revoke a token for good (a leaked one, a leaver's)")
    t.add_argument("token", nargs="?", default="-", help="the token; - or nothing: read it from standard input")
    t.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    t.add_argument("--db")

    p = sub.add_parser("user", help="sign-in accounts for the web panels")
    usub = p.add_subparsers(dest="user_command", required=True)
    u = usub.add_parser("create", help="create an account (the first admin comes from here)")
    u.add_argument("--username", required=True)
    u.add_argument("--role", choices=["admin", "supervisor", "manager"], required=True)
    u.add_argument("--manager", help="the manager a manager account signs in as")
    u.add_argument("--name", default="", help="display name")
    u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    u.add_argument("--db")

    p = sub.add_parser("backup", help="a consistent copy of the SQLite database, also while the server runs")
    p.add_argument("dest", type=Path, help="the copy's file, or a folder to put acd-YYYYmmdd-HHMMSS.db in")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--db", help="database URL (default: the one `serve` uses)")

    p = sub.add_parser("restore", help="put a backup in place of the SQLite database (the server stopped)")
    p.add_argument("backup", type=Path, help="a file `acd backup` wrote")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--db", help="database URL (default: the one `serve` uses)")

    # `acd simulate ...` hands its arguments to the simulator's own parser (see acd.sim)
    sub.add_parser("simulate", help="what-if simulation of routing policies on a scenario", add_help=False)

    crm_cli.add_commands(sub, DEFAULT_CONFIG)
    telephony_cli.add_commands(sub, DEFAULT_CONFIG)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        from acd.sim.__main__ import main as simulate

        return simulate(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "user":
        return asyncio.run(create_user(args))
    if args.command == "check-config":
        return check_config(args.path)
    if args.command == "backup":
        return backup(args.config, args.db, args.dest)
    if args.command == "restore":
        return restore(args.config, args.db, args.backup)
    if args.command in crm_cli.COMMANDS:
        return crm_cli.run(args)
    if args.command in telephony_cli.COMMANDS:
        return telephony_cli.run(args)
    if args.command == "token":
        return asyncio.run(create_token(args) if args.token_command == "create" else revoke_token(args))
    logs.setup(json_lines=args.log_json)
    from acd.app import serve
    from acd.config import ConfigError

    try:
        from acd.runtime import event_loop_runner

        with event_loop_runner() as runner:
            runner.run(serve(args.config, args.db, args.host, args.port, args.demo, args.cluster))
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    return 0


def check_config(path: Path) -> int:
    from acd.config import check

    problems = check(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


def database(config: Path, db: str | None) -> str:
    """The URL `serve` would use; --db alone is enough (a backup or a restore should not
    depend on the deployment file being valid)."""
    from acd.app import database_url
    from acd.config import load_deployment

    return db or database_url(load_deployment(config), None)


def backup(config: Path, db: str | None, dest: Path) -> int:
    from acd.config import ConfigError
    from acd.storage.backup import BackupError
    from acd.storage.backup import backup as copy_database

    try:
        report = copy_database(database(config, db), dest)
    except ConfigError as err:
        return problems(err)
    except BackupError as err:
        print(f"backup failed: {err}", file=sys.stderr)
        return 1
    print(
        f"backed up to {report.path}: {report.size_bytes / 1e6:.1f} MB, {report.contacts} contacts, "
        f"schema {'+'.join(report.revisions)}, in {report.seconds:.2f} s"
    )
    return 0


def restore(config: Path, db: str | None, backup_file: Path) -> int:
    from acd.config import ConfigError
    from acd.storage.backup import BackupError
    from acd.storage.backup import restore as restore_database

    try:
        report = restore_database(backup_file, database(config, db))
    except ConfigError as err:
        return problems(err)
    except BackupError as err:
        print(f"restore failed: {err}", file=sys.stderr)
        return 1
    print(f"restored {backup_file} into {report.path}: {report.contacts} contacts, schema {'+'.join(report.revisions)}")
    if report.replaced is not None:
        print(f"the database it replaced is kept in {report.replaced}")
    return 0


@asynccontextmanager
async def deployment_and_store(config: Path, db: str | None) -> AsyncIterator[tuple[Deployment, Store]]:
    """The deployment file and the database it names, for the commands that work on both.
    A broken file raises `ConfigError`; `problems` prints it."""
    from acd.app import database_url
    from acd.config import load_deployment
    from acd.storage import open_store

    deployment = load_deployment(config)
    store = await open_store(database_url(deployment, db))
    try:
        yield deployment, store
    finally:
        await store.close()


def problems(err: ConfigError) -> int:
    for problem in err.problems:
        print(problem, file=sys.stderr)
    return 1


async def known_manager(store: Store, deployment: Deployment, manager_id: str) -> bool:
    if manager_id in {m.id for m in deployment.managers} | {m.id for m in await store.load_managers()}:
        return True
    print(f"no manager {manager_id}", file=sys.stderr)
    return False


async def create_token(args: argparse.Namespace) -> int:
    from acd.config import ConfigError

    if args.role == "manager" and not args.manager:
        print("a manager token needs --manager ID", file=sys.stderr)
        return 2
    try:
        async with deployment_and_store(args.config, args.db) as (deployment, store):
            if args.manager and not await known_manager(store, deployment, args.manager):
                return 1
            print(await store.create_token(args.role, args.manager, args.label))
    except ConfigError as err:
        return problems(err)
    return 0


async def revoke_token(args: argparse.Namespace) -> int:
    """In the database the server uses (the same --config/--db as `serve`). A running server
    still accepts the token for up to 10 s (its token cache); `POST /api/tokens/revoke`
    stops it at once on the node that takes the request."""
    import time

    from acd.config import ConfigError

    # from standard input, the token stays out of the shell's history and `ps`
    token = (sys.stdin.readline() if args.token == "-" else args.token).strip()
    if not token:
        print("no token given", file=sys.stderr)
        return 2
    try:
        async with deployment_and_store(args.config, args.db) as (_, store):
            if not await store.revoke_token(token):
                print("no live token like this (unknown, or revoked already)", file=sys.stderr)
                return 1
            await store.audit(time.time(), "cli", "revoke_token", "token", {})
    except ConfigError as err:
        return problems(err)
    print("revoked")
    return 0


async def create_user(args: argparse.Namespace) -> int:
    import getpass

    from acd.config import ConfigError
    from acd.storage.accounts import Accounts, Conflict

    if args.role == "manager" and not args.manager:
        print("a manager account needs --manager ID", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 2
    try:
        async with deployment_and_store(args.config, args.db) as (deployment, store):
            if args.manager and not await known_manager(store, deployment, args.manager):
                return 1
            try:
                await Accounts(store).create(args.username, password, args.role, args.manager, args.name)
            except Conflict:
                print(f"account {args.username} exists", file=sys.stderr)
                return 1
    except ConfigError as err:
        return problems(err)
    print(f"created {args.role} {args.username}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
