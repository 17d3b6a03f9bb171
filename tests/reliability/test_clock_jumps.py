"""The wall clock steps under a running server (an NTP step, `date -s`): a real `acd serve` process
runs under libfaketime, whose offset this test rewrites while the server holds pending offers,
waiting contacts, paused and available managers (with their inactivity timers) and scheduled
callbacks. Only CLOCK_REALTIME is faked (FAKETIME_DONT_FAKE_MONOTONIC=1): that is what a step moves.

What is correct (README "Running it", acd/clock.py):
* durations follow the monotonic clock: a step an hour forward expires no offer and fires no
  timer early; the step back to ten minutes behind the real time (70 minutes back) holds no
  offer any longer; waits stay true;
* the decision log's times never go backwards and its waits are the real ones;
* a callback promised at a wall-clock time is due at that time by the stepped clock: an hour
  forward makes one promised in half an hour due now, but not one promised in two hours; and one
  asked for "now" after the step back is due now, not when the server's own time line gets there.
"""

from __future__ import annotations

import glob
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd.pbxsim import PbxSim, Phone
from tests.reliability.server_process import DEVICES, FAST_CALLBACKS, calls_config, serve, stop_both, until
from tests.test_restart import LEAD, free_port, token

LIBFAKETIME = next(
    iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))),
    None,
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        LIBFAKETIME is None, reason="libfaketime is not installed: apt-get install faketime (.ci/run does it)"
    ),
]

OFFER_TIMEOUT = 6.0  # web offers, seconds: long enough to look at them, short enough to see them expire
EDITS = {
    **FAST_CALLBACKS,
    "  web: {offer_timeout: 2m,": f"  web: {{offer_timeout: {OFFER_TIMEOUT:g}s,",
    "  missed_offers: 1\n": "  missed_offers: 100\n",  # a missed offer moves on; nobody gets paused for it
}
PAUSED = ("grigory", "daria", "egor")
AHEAD, BEHIND = 3600, -600  # the wall clock's offset from the real time after the first and the second step


def set_wall_offset(path: Path, seconds: int) -> None:
    """The faked wall clock runs `seconds` ahead of the real one from now on."""
    tmp = path.with_suffix(".new")
    tmp.write_text(f"{seconds:+d}\n", encoding="ascii")
    tmp.replace(path)  # atomically: the server reads the file on every clock_gettime


async def test_a_step_of_the_wall_clock_neither_expires_nor_holds_offers_and_keeps_callbacks_promised(
    tmp_path: Path,
) -> None:
    assert LIBFAKETIME is not None
    offset_file = tmp_path / "wall-offset"
    set_wall_offset(offset_file, 0)
    faketime = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    sim = PbxSim(time_scale=0.05, auth_failure_delay=0.05)
    await sim.start()
    for device in DEVICES:
        sim.add_phone(Phone(device, answer_after=None))  # managers' phones ring; nobody is on a call
    agi_port, port = free_port(), free_port()
    sim.agi_target = ("127.0.0.1", agi_port)
    config = calls_config(tmp_path, sim.ami_port, agi_port, EDITS)
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = await serve(config, db, port, log, faketime)
    started = time.monotonic()
    try:
        sup = await token(config, db)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sup}"}) as http:

            async def get(path: str) -> dict[str, Any]:
                async with http.get(f"{base}{path}") as r:
                    assert r.status == 200, (path, r.status, await r.text())
                    return dict(await r.json())

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with http.post(f"{base}{path}", json=body) as r:
                    assert r.status in (200, 201), (path, r.status, await r.text())
                    return dict(await r.json())

            async def step_metric() -> float:
                """What the server's /metrics says the wall clock was stepped by."""
                async with http.get(f"{base}/metrics") as r:
                    text = await r.text()
                return float(re.search(r"(?m)^acd_wall_clock_step_seconds (\S+)$", text)[1])  # type: ignore[index]

            assert abs(await step_metric()) < 5
            for mid in PAUSED:
                await post(f"/api/managers/{mid}/presence", {"state": "paused", "reason": "lunch"})
            leads = [(await post("/api/leads", {**LEAD, "name": f"lead {i}"}))["id"] for i in range(6)]
            now = time.time()  # the server's wall clock too, until the first step
            soon = (await post("/api/callbacks", {"phone": "+79163000001", "after": now + 1800}))["id"]
            later = (await post("/api/callbacks", {"phone": "+79163000002", "after": now + 7200}))["id"]

            async def offers_out() -> bool:
                return len((await get("/api/queue"))["offered"]) == 3  # anna, boris, vera

            await until(offers_out, "the three available sales managers offered a lead each")
            before = await get("/api/queue")

            # ---- an hour forward ------------------------------------------------------------
            set_wall_offset(offset_file, AHEAD)
            snap = await get("/api/queue")
            offered = {c["id"]: c for c in snap["offered"]}
            kept = 0
            for c in before["offered"]:
                if snap["now"] < c["offer_expires_at"] - 0.5:  # not yet due by the monotonic clock
                    assert offered.get(c["id"], {}).get("offered_to") == c["offered_to"], "offer expired by the step"
                    kept += 1
            elapsed = time.monotonic() - started
            waits = [c["waiting_seconds"] for c in snap["waiting"] + snap["offered"]]
            assert waits and max(waits) < elapsed + 5, f"waits {waits} after {elapsed:.0f} s: the step aged them"
            managers = {m["id"]: m for m in snap["managers"]}
            assert all(managers[mid]["presence"] == "paused" for mid in PAUSED)
            assert all(managers[mid]["pause_reason"] != "inactive" for mid in managers), "inactivity fired early"
            assert (await get(f"/api/callbacks/{later}"))["status"] == "pending"
            reported_step = await step_metric()
            assert AHEAD - 5 < reported_step < AHEAD + 5

            async def promised_time_came() -> bool:
                return (await get(f"/api/callbacks/{soon}"))["status"] != "pending"

            await until(promised_time_came, "the callback promised within the hour is due after the step", 30)
            assert (await get(f"/api/callbacks/{later}"))["status"] == "pending", "two hours ahead is not due yet"

            # ---- back to ten minutes behind -----------------------------------------------
            set_wall_offset(offset_file, BEHIND)

            def offers(snap: dict[str, Any]) -> set[tuple[str, str, float]]:
                """The offers out, each once: a missed contact may be offered to the same manager again."""
                return {(c["id"], c["offered_to"], c["offer_expires_at"]) for c in snap["offered"]}

            at_step = offers(await get("/api/queue"))
            assert at_step, "offers were out when the clock went back"
            stepped_back = time.monotonic()

            async def offers_at_step_ended() -> bool:
                return not at_step & offers(await get("/api/queue"))

            # on the raw wall clock they would ring on for another 70 minutes
            await until(offers_at_step_ended, "offers out at the step back expire after their own timeout", 60)
            held = time.monotonic() - stepped_back
            assert (await get(f"/api/callbacks/{later}"))["status"] == "pending"
            asap = (await post("/api/callbacks", {"phone": "+79163000003"}))["id"]

            async def asap_queued() -> bool:
                return (await get(f"/api/callbacks/{asap}"))["status"] != "pending"

            await until(asap_queued, "a callback asked for now is due now, not when the old clock reaches it", 30)
            assert BEHIND - 5 < await step_metric() < BEHIND + 5

            # ---- the decision log -----------------------------------------------------------
            decisions = sorted((await get("/api/decisions?limit=1000"))["decisions"], key=lambda d: d["id"])
            contacts = {d["contact_id"] for d in decisions}
            arrived = {cid: (await get(f"/api/contacts/{cid}"))["arrived_at"] for cid in contacts}
            elapsed = time.monotonic() - started
            decision_waits = [d["at"] - arrived[d["contact_id"]] for d in decisions]
            assert all(-0.001 <= w < elapsed + 5 for w in decision_waits), decision_waits
            ats = [d["at"] for d in decisions]
            assert ats == sorted(ats), "the decision log went back in time"
            print(
                f"RELIABILITY clock offsets={AHEAD:+d}s,{BEHIND:+d}s leads={len(leads)} "
                f"offers_kept_over_forward_step={kept}/{len(before['offered'])} decisions={len(decisions)} "
                f"max_decision_wait={max(decision_waits):.1f}s test_elapsed={elapsed:.1f}s "
                f"acd_wall_clock_step_seconds={reported_step:.0f} offers_out_at_back_step={len(at_step)} "
                f"ended_after={held:.1f}s (timeout {OFFER_TIMEOUT:g}s) "
                f"callback_in_30min=due callback_in_2h=pending callback_asap_after_back_step=due"
            )
    finally:
        await stop_both(proc, sim, log)
