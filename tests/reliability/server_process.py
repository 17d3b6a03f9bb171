"""Shared by the reliability tests: a real `acd serve` process with telephony on, pointed at the
simulated PBX, and the checks they make on it from outside (its API and the PBX's channels)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

from acd.app import SHUTDOWN_STUCK_EXIT
from acd.pbxsim import PbxSim
from tests.test_restart import ROOT

DEVICES = ["PJSIP/101", "PJSIP/102", "PJSIP/103", "PJSIP/104", "PJSIP/105", "PJSIP/106"]


def calls_config(tmp_path: Path, ami_port: int, agi_port: int, edits: Mapping[str, str] | None = None) -> Path:
    """The example deployment with telephony on, pointed at the simulator, open 24/7; `edits`
    replace further lines of it (old text → new text, each must be there)."""
    text = (ROOT / "config" / "acd.example.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^hours:\n.*?(?=^\S)", "", text, count=1)  # no site hours: always open
    text = re.sub(r"(?m)^    hours:\n(?:      .*\n)+", "", text)  # nor a team's (its whole block)
    for old, new in (
        ("  enabled: false             # true: start", "  enabled: true             # true: start"),
        # whole lines: an AMI port such as 45735 must not then be taken for the FastAGI line
        ("    port: 5038\n", f"    port: {ami_port}\n"),
        ("    port: 4573\n", f"    port: {agi_port}\n"),
        ("  reconcile_interval: 1m", "  reconcile_interval: 1s"),
        ("flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}"),
        *(edits or {}).items(),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "acd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# Callbacks rung back to back: no wrap-up on the server's real clock, a short back-off, no rate limit.
FAST_CALLBACKS = {
    "  callback_backoff: 2m": "  callback_backoff: 1s",
    "    leads_per_minute: 10 ": "    leads_per_minute: 1000000 ",
    "    api_per_minute: 600": "    api_per_minute: 1000000",
    "  callback: {offer_timeout: 20s, wrap_up: 30s}": "  callback: {offer_timeout: 20s, wrap_up: 0s}",
}


async def serve(
    config: Path, db: str, port: int, log: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start `acd serve --demo` and wait for its "listening" line; `env` adds to the environment."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "acd.cli", "serve", "--config", str(config), "--db", db, "--port", str(port), "--demo"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("ab"),  # a file, not a pipe: nobody reads it while the server runs
        env={**os.environ, "ACD_AMI_SECRET": "acdsecret", **(env or {})},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"listening" in line, (line, log.read_text(errors="replace"))
    return proc


async def stop_both(proc: asyncio.subprocess.Process, sim: PbxSim, log: Path) -> None:
    """Stop the server (SIGTERM, as an operator would) and the simulated PBX, each within 30 s:
    a part that does not stop fails the test with the server's last log lines, instead of
    hanging until pytest's 300 s timeout."""
    try:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the server did not stop within 30 s of SIGTERM; its log ends:\n{tail}") from None
            if proc.returncode == SHUTDOWN_STUCK_EXIT:
                # It ended itself as after kill -9, which these tests show it survives; what
                # hung is for the log (printed: `make reliability` runs with -s), not a failure
                # of what the test checks.
                tail = log.read_text(errors="replace")[-6000:]
                print(f"\nRELIABILITY shutdown stuck, the server ended itself; its log ends:\n{tail}", flush=True)
    finally:
        try:
            await asyncio.wait_for(sim.close(), 30)
        except TimeoutError:
            raise AssertionError("the simulated PBX did not close within 30 s") from None


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Poll another process's state (its API) until `check()` is true."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.2)  # another process: there is nothing to wait on but its API
    raise AssertionError(what)


def bridged_callers(sim: PbxSim) -> list[str]:
    """Inbound callers' channels bridged to a manager now."""
    return [name for name, leg in sim.legs.items() if name.startswith("PJSIP/trunk-") and leg.bridged is not None]


def calls_on_managers(snap: Mapping[str, Any]) -> int:
    """Calls the managers hold, in a GET /api/queue snapshot."""
    return sum(m["load"].get("call", 0) for m in snap["managers"])


def stuck_managers(snap: Mapping[str, Any]) -> list[str]:
    """Managers in a GET /api/queue snapshot whose state the contacts do not explain: offered
    with no offer out to them, holding two offers, or busy with nothing to be busy with."""
    offered_to = [c["offered_to"] for c in snap["offered"]]
    stuck = []
    for m in snap["managers"]:
        if m["presence"] == "offered" and offered_to.count(m["id"]) != 1:
            stuck.append(f"{m['id']} offered, with {offered_to.count(m['id'])} offers out")
        elif m["presence"] != "offered" and m["id"] in offered_to:
            stuck.append(f"{m['id']} {m['presence']} but offered a contact")
        elif m["presence"] == "busy" and not any(m["load"].values()) and not m.get("device_busy"):
            stuck.append(f"{m['id']} busy with nothing")
    return stuck


def overlapping_attempts(callback: Mapping[str, Any]) -> int:
    """Attempts of one callback (GET /api/callbacks/{id}) that ran at the same time as another."""
    spans = sorted((a["started_at"], a["ended_at"] or a["started_at"]) for a in callback["attempts_log"])
    return sum(1 for (_, end), (start, _) in pairwise(spans) if start < end)


def most_calls_at_once(sim: PbxSim, prefix: str = "Local/") -> dict[str, int]:
    """For every number the PBX dialled out to (channel names starting with `prefix`), the most
    live channels it had to that number at one moment, by its own event log (a Local channel's
    two halves count once)."""
    live: dict[str, set[str]] = {}
    most: dict[str, int] = {}
    for headers in sim.events:
        event = dict(headers)
        name = event.get("Channel", "")
        if not name.startswith(prefix) or name.endswith(";2"):
            continue
        number = name.removeprefix("Local/").split("@")[0]
        if event.get("Event") == "Newchannel":
            live.setdefault(number, set()).add(name)
            most[number] = max(most.get(number, 0), len(live[number]))
        elif event.get("Event") == "Hangup":
            live.get(number, set()).discard(name)
    return most
