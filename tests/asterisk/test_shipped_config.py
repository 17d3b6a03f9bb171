"""The shipped asterisk_conf/, read the way Asterisk reads it (asterisk_config.py): what the
dialplan can see, what the AMI user gets, where the server's calls land, what the example
endpoints and the voicemail box must provide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asterisk_config import Dialplan, expand, load, match

from acd.telephony.calls import CallSettings

CONF = Path(__file__).resolve().parents[2] / "asterisk_conf"
MANAGER_KEYS = ("secret", "deny", "permit", "acl")


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return Dialplan.read(CONF / "extensions.conf")


# ---- the AMI password is not the dialplan's -----------------------------------------------


def test_the_dialplan_globals_hold_the_acd_settings_and_no_ami_password(dialplan: Dialplan) -> None:
    leaked = [k for k in dialplan.globals if k.lower() in MANAGER_KEYS]
    assert leaked == [], f"GET VARIABLE / dialplan show globals would show {leaked}"
    assert {"ACD_HOST", "ACD_AGI_PORT", "ACD_SERVER", "ACD_FALLBACK_WAIT", "ACD_LANGUAGE"} <= set(dialplan.globals)
    # nor as a context (a [section] of acd.conf that is not a template would become one)
    for name, exts in dialplan.contexts.items():
        assert not any(k.lower() in MANAGER_KEYS for k in exts), name
    assert "CHANGE_ME" not in repr(dialplan.globals) + repr(dialplan.contexts)


def test_the_ami_user_gets_its_password_and_acl_from_acd_conf_and_is_the_only_user() -> None:
    cfg = load(CONF / "manager.conf")
    users = [c for c in cfg.categories() if c.name.lower() != "general"]
    assert [u.name for u in users] == ["acd"], "templates are no AMI users"
    acd = users[0]
    assert acd.get("secret") == "CHANGE_ME"
    assert acd.get("deny") == "0.0.0.0/0.0.0.0" and acd.get("permit") == "127.0.0.1/255.255.255.255"
    assert acd.get("read") == "call,user,reporting,system"
    assert acd.get("write") == "originate,call,reporting,system"
    general = cfg.category("general")
    assert general is not None and general.get("ACD_HOST") is None, "no unknown keys in [general]"


def test_the_docker_compose_rewrites_still_find_their_lines() -> None:
    # docker-compose.yml edits acd.conf with sed: ^secret = / ^ACD_HOST = / ^permit =
    text = (CONF / "acd.conf").read_text()
    for start in ("secret = ", "ACD_HOST = ", "permit = "):
        assert len(re.findall(rf"^{re.escape(start)}", text, re.M)) == 1, start


# ---- inbound numbers ---------------------------------------------------------------------


def _run_to_agi(dp: Dialplan, context: str, exten: str, dnid: str = "") -> str:
    """Follow [context] from `exten` through Set()/Goto() to the first AGI(); its data, expanded."""
    variables = {**dp.globals, "EXTEN": exten, "CALLERID(dnid)": dnid}
    name = dp.find(context, exten)
    assert name is not None, f"{exten!r} matches no extension of [{context}]"
    priority = 1
    for _ in range(50):
        step = next(s for s in dp.steps(context, name) if s.priority == priority)
        if step.app == "Set":
            var, _, value = step.data.partition("=")
            variables[var] = expand(value, variables)
        elif step.app == "Goto":
            parts = step.data.split(",")
            target_ext, priority = parts[-2], int(parts[-1])
            context = parts[0] if len(parts) == 3 else context
            name = dp.find(context, target_ext) or ""
            variables["EXTEN"] = target_ext
            continue
        elif step.app == "AGI":
            return expand(step.data, variables)
        priority += 1
    raise AssertionError("no AGI reached")


@pytest.mark.parametrize(
    ("exten", "dnid", "passed"),
    [
        ("74951234567", "", "74951234567"),
        ("+74951234567", "", "74951234567"),
        ("101", "", "101"),
        ("1", "", "1"),
        ("s", "", ""),
        ("s", "+74951234567", "74951234567"),
    ],
)
def test_every_inbound_number_reaches_the_ivr_with_its_digits(
    dialplan: Dialplan, exten: str, dnid: str, passed: str
) -> None:
    data = _run_to_agi(dialplan, "acd-in", exten, dnid)
    url, _, arg = data.partition(",")
    assert url == "agi://127.0.0.1:4573/ivr?flow=main&server=default"
    assert arg == passed


def test_the_inbound_patterns_leave_the_special_extensions_alone(dialplan: Dialplan) -> None:
    for special in ("h", "i", "t", "T"):
        assert not any(match(p, special) for p in dialplan.contexts["acd-in"] if p.startswith("_")), special
    assert dialplan.find("acd-in", "h") == "h"


# ---- everything the server names exists --------------------------------------------------


def test_every_context_the_server_sends_a_call_to_exists(dialplan: Dialplan) -> None:
    # Originate (callbacks, click-to-call), Redirect (transfers): Context/Exten s, priority 1
    for context in ("acd-callback", "acd-clicktocall", "acd-transfer"):
        assert dialplan.find(context, "s") == "s", context
    # Dial(...U(acd-answered^...)) and the default outbound_dial Local/{number}@acd-outbound
    assert dialplan.find("acd-answered", "s") == "s"
    assert dialplan.find("acd-outbound", "74951234567") is not None
    # ACD_ACTION=voicemail / fallback
    for context in ("acd-voicemail", "acd-fallback"):
        assert dialplan.find(context, "s") == "s"


def test_every_goto_in_the_dialplan_lands_on_an_extension_or_a_label(dialplan: Dialplan) -> None:
    for context, exts in dialplan.contexts.items():
        for exten, steps in exts.items():
            labels = {s.label for s in steps if s.label}
            for step in steps:
                targets = []
                if step.app == "Goto":
                    targets.append(step.data)
                elif step.app == "GotoIf":
                    targets.extend(t for t in step.data.split("?", 1)[1].split(":") if t)
                for target in targets:
                    parts = target.split(",")
                    if len(parts) == 1:
                        assert parts[0] in labels, f"[{context}] {exten}: no label {parts[0]}"
                    else:
                        ctx = parts[0] if len(parts) == 3 else context
                        ext = parts[-2]
                        if "$" not in ext:
                            assert dialplan.find(ctx, ext) is not None, f"[{context}] {exten}: {target}"


def test_the_queue_and_the_example_endpoints_match_the_dialplan(dialplan: Dialplan) -> None:
    pjsip = load(CONF / "pjsip.example.conf")
    endpoints = {c.name: c for c in pjsip.categories() if c.get("type") == "endpoint"}
    assert {"101", "102", "103", "trunk"} <= set(endpoints)
    assert any(c.name == "trunk" and c.get("type") == "aor" for c in pjsip.categories())
    named = set()
    for steps in (s for exts in dialplan.contexts.values() for s in exts.values()):
        for step in steps:
            named.update(re.findall(r"PJSIP/(\w+)(?![\w$])", step.data))
    queues = load(CONF / "queues.conf")
    fallback = queues.category("acd-fallback")
    assert fallback is not None
    members = {m.split(",")[0].removeprefix("PJSIP/") for m in fallback.all("member")}
    assert members == {"101", "102", "103"}
    assert named | members <= set(endpoints), "hints and queue members name example endpoints"
    assert "PJSIP/${EXTEN}@trunk" in str(dialplan.contexts["acd-outbound"])
    assert endpoints["trunk"].get("context") == "acd-in"
    for mid in ("101", "102", "103"):
        context = endpoints[mid].get("context")
        assert context in dialplan.contexts and dialplan.find(context, "102") is not None
        assert dialplan.find(context, "74951234567") is not None


# ---- voicemail -----------------------------------------------------------------------------


def test_the_pbx_mailbox_the_dialplan_uses_exists_with_the_acds_limits(dialplan: Dialplan) -> None:
    steps = dialplan.steps("acd-voicemail", "s")
    boxes = [s.data.split(",")[0] for s in steps if s.app == "VoiceMail"]
    assert boxes == ["acd@default"]
    vm = load(CONF / "voicemail.conf")
    default = vm.category("default")
    assert default is not None and default.get("acd") is not None
    pin = (default.get("acd") or "").split(",")[0]
    assert not pin.isdigit(), "no PIN anybody could guess until the site sets one"
    general = vm.category("general")
    assert general is not None
    assert int(general.get("maxsecs") or 0) == int(CallSettings().voicemail_max)
    assert general.get("format") == "wav" and general.get("maxsilence") == "5"
    # without the box, the message is still recorded where the ACD keeps its own
    records = [s.data for s in steps if s.app == "Record"]
    assert records and records[0].startswith("acd/voicemail/${UNIQUEID}.wav")
