"""On Asterisk too, a callback's manager waiting on the line is told why it drops when a machine
answered the customer's leg (asterisk.callback_machine_detection): [acd-callback] plays
`acd/common/${ACD_MACHINE_NOTICE}-${ACD_LANGUAGE}` on their channel before it reports and hangs
up — "we will call again later", or that it was the last attempt — in the customer's language.

The simulated PBX follows the shipped dialplan's steps; the last test reads that dialplan the way
Asterisk does and checks that what the server sends names a prompt `acd prompts generate` writes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from telephony_harness import DEVICES, Harness, start_harness

from acd.core import events as ev
from acd.core.model import Channel
from acd.pbxsim import Phone
from acd.telephony.prompts import all_prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asterisk"))
from asterisk_config import Dialplan, expand

CONF = Path(__file__).resolve().parents[2] / "asterisk_conf" / "extensions.conf"
CUSTOMER = "Local/79165550000@acd-outbound"  # asterisk.outbound_dial with the customer's number
VOICEMAIL = "LONGGREETING-2000-1500"


def managers_stay_on_the_line(h: Harness) -> None:
    for device in DEVICES.values():
        h.sim.phones[device].talk_for = None


def originate(h: Harness) -> list[tuple[str, str]]:
    [action] = [a for s in h.sim.ami.all_sessions for a in s.actions if ("Action", "Originate") in a]
    return action


def variables(action: list[tuple[str, str]]) -> dict[str, str]:
    return dict(v.split("=", 1) for k, v in action if k == "Variable")


def on_channel(h: Harness, device: str) -> list[dict[str, str]]:
    """Every event of the manager's leg (its channel is named after the device), in order."""
    return [dict(e) for e in h.sim.events if dict(e).get("Channel", "").startswith(device + "-")]


def played(events: list[dict[str, str]]) -> list[str]:
    return [e["AppData"] for e in events if e.get("Event") == "Newexten" and e.get("Application") == "Playback"]


async def one_attempt(language: str | None, machine: str | None, **asterisk: object) -> tuple[Harness, object, str]:
    """A callback whose customer's line `machine` answers (None: a person): the harness, its stop,
    and the device of the manager who rang. Returns once the attempt's CallbackResult is in."""
    h, stop = await start_harness(**asterisk)
    managers_stay_on_the_line(h)
    h.sim.add_phone(Phone(CUSTOMER, answer_after=0.2, talk_for=1.0, machine=machine))
    await h.telephony.callbacks.request(phone="+7 916 555-00-00", language=language)
    offer = await h.command(ev.OfferContact, lambda c: c.contact.channel is Channel.CALLBACK)
    await h.user_event("CallbackResult")
    await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
    return h, stop, offer.manager.device


@pytest.mark.parametrize(
    ("language", "sound"),
    [
        ("en", "acd/common/callback-machine-en"),
        (None, "acd/common/callback-machine-ru"),  # no language of their own: the site's default (ru)
    ],
)
async def test_the_manager_hears_that_a_machine_answered_before_the_line_drops(
    language: str | None, sound: str
) -> None:
    h, stop, device = await one_attempt(language, VOICEMAIL, callback_machine_detection=True)
    try:
        events = on_channel(h, device)
        assert played(events) == [sound]
        names = [(e["Event"], e.get("UserEvent") or e.get("Application") or e.get("Variable")) for e in events]
        notice = names.index(("Newexten", "Playback"))
        # the notice is played, to its end, before the result is reported and the line dropped
        assert names[notice + 1 : notice + 3] == [("VarSet", "PLAYBACKSTATUS"), ("UserEvent", "CallbackResult")]
        assert names[-1] == ("Hangup", None)
        assert next(e for e in events if e.get("Variable") == "PLAYBACKSTATUS")["Value"] == "SUCCESS"
        sent = variables(originate(h))
        assert (sent["ACD_AMD"], sent["ACD_MACHINE_NOTICE"]) == ("1", "callback-machine")
        assert sent["ACD_LANGUAGE"] == sound.rsplit("-", 1)[1]
    finally:
        await stop()


async def test_after_the_last_attempt_the_manager_is_not_promised_another() -> None:
    h, stop, device = await one_attempt(
        "ru", "INITIALSILENCE-2500-2500", callback_machine_detection=True, callback_attempts=1
    )
    try:
        assert played(on_channel(h, device)) == ["acd/common/callback-machine-last-ru"]
        assert variables(originate(h))["ACD_MACHINE_NOTICE"] == "callback-machine-last"
    finally:
        await stop()


async def test_a_person_who_answers_hears_no_notice() -> None:
    h, stop, device = await one_attempt("ru", None, callback_machine_detection=True)
    try:
        assert played(on_channel(h, device)) == []
        assert not any(e.get("Variable") == "PLAYBACKSTATUS" for e in on_channel(h, device))
    finally:
        await stop()


async def test_with_detection_off_the_originate_is_as_before_and_nothing_is_played() -> None:
    h, stop, device = await one_attempt("ru", VOICEMAIL)
    try:
        assert played(on_channel(h, device)) == []
        assert list(variables(originate(h))) == ["ACD_CONTACT", "ACD_ATTEMPT", "ACD_CUSTOMER_DIAL", "ACD_CUSTOMER_RING"]
    finally:
        await stop()


async def test_the_shipped_dialplan_plays_a_prompt_the_generator_writes() -> None:
    """[acd-callback] as Asterisk reads it: after the customer's Dial, a machine verdict goes on
    to a Playback whose name, expanded with the Originate's variables, is a generated prompt;
    anything else jumps over it to the report."""
    h, stop, _ = await one_attempt("en", VOICEMAIL, callback_machine_detection=True, callback_attempts=1)
    try:
        sent = variables(originate(h))
        deployment = h.server.services.deployment
        generated = {sound for sound, _, _ in all_prompts(deployment.flows.values(), deployment.languages)}
    finally:
        await stop()
    steps = Dialplan.read(CONF).steps("acd-callback", "s")
    apps = [s.app for s in steps]
    after = steps[apps.index("Dial") + 1 :]
    assert [s.app for s in after[:3]] == ["GotoIf", "Playback", "Set"]
    skip, notice, report = after[:3]
    condition, _, target = skip.data.partition("?")
    assert target == report.label == "report" and report.data == "ACD_REPORTED=1"
    assert '"${SHARED(ACD_AMDSTATUS)}" != "MACHINE"' in condition and '"${ACD_MACHINE_NOTICE}" = ""' in condition
    sound = expand(notice.data, sent)
    assert sound == "acd/common/callback-machine-last-en" and sound in generated
    assert {
        f"acd/common/{stem}-{lang}" for stem in ("callback-machine", "callback-machine-last") for lang in ("ru", "en")
    } <= generated
