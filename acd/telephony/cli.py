"""Adapter: `acd prompts generate` — synthesise every prompt the deployment can play."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("prompts",)


def add_commands(sub: Any, default_config: Path) -> None:
    p = sub.add_parser("prompts", help="IVR prompt sounds")
    psub = p.add_subparsers(dest="prompts_command", required=True)
    g = psub.add_parser("generate", help="synthesise the prompts (espeak-ng + sox, 8 kHz mono)")
    g.add_argument("--config", type=Path, default=default_config)
    g.add_argument("--sounds-dir", type=Path, default=Path("data/sounds"), help="Asterisk's sounds directory")
    g.add_argument("--format", choices=["wav", "gsm"], default="wav")
    g.add_argument("--force", action="store_true", help="overwrite existing files (recordings too)")


def run(args: argparse.Namespace) -> int:
    from acd.config import ConfigError, load_deployment
    from acd.telephony.prompts import ToolMissing, all_prompts, generate

    try:
        deployment = load_deployment(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    prompts = list(all_prompts(deployment.flows.values(), deployment.languages))
    try:
        done = asyncio.run(generate(prompts, args.sounds_dir, fmt=args.format, force=args.force))
    except ToolMissing as err:
        print(err, file=sys.stderr)
        return 1
    made = sum(1 for g in done if g.created)
    for g in done:
        print(f"{'created' if g.created else 'kept   '} {g.path}")
    print(f"{made} created, {len(done) - made} kept, in {args.sounds_dir}")
    return 0
