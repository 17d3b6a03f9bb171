"""Test peer: run the simulated PBX by hand.

    python -m acd.pbxsim --ami-port 5038 --agi-target 127.0.0.1:4573 --phone PJSIP/mgr1 --call 5551234:ivr:1

Each ``--call NUMBER:SCRIPT:KEYS`` places one inbound call whose caller presses KEYS at the first
input prompt. Stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from .pbx import PbxSim
from .scenario import Caller, Phone, Press


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.agi_target.rpartition(":")
    sim = PbxSim(agi_target=(host or "127.0.0.1", int(port)), ami_secret=args.secret, time_scale=args.time_scale)
    sim.ami.port = args.ami_port
    await sim.start()
    for device in args.phone:
        sim.add_phone(Phone(device, answer_after=1.0))
    print(f"pbxsim: AMI on 127.0.0.1:{sim.ami_port} (user acd), FastAGI target {args.agi_target}", flush=True)
    for spec in args.call:
        number, _, rest = spec.partition(":")
        script, _, keys = rest.partition(":")
        call = sim.call(Caller(number=number, script=script or "ivr", steps=[Press(keys)] if keys else []))
        result = await call.agi_done
        print(f"call {number}: AGISTATUS={result.agi_status} fallback={result.fallback}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m acd.pbxsim", description="Simulated Asterisk 20 (AMI + FastAGI)")
    parser.add_argument("--ami-port", type=int, default=0)
    parser.add_argument("--agi-target", default="127.0.0.1:4573")
    parser.add_argument("--secret", default="acdsecret")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--phone", action="append", default=[])
    parser.add_argument("--call", action="append", default=[])
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
