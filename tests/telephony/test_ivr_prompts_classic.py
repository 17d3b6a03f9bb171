"""The IVR interpreter (pure), its classic-AGI renderer through pyst2, and prompt generation."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest
from telephony_harness import classic_agi

from acd.cli import main as acd
from acd.config import load_deployment
from acd.telephony.ivr import Ask, Done, IvrRun, Say
from acd.telephony.queue_log import QueueLog

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "acd.example.yaml"
FLOW = load_deployment(EXAMPLE, environ={}).flows["main"]


def drive(run: IvrRun, keys: list[str | None]) -> tuple[Done, list[Say | Ask]]:
    seen: list[Say | Ask] = []
    action = run.step()
    while not isinstance(action, Done):
        seen.append(action)
        action = run.step(keys.pop(0) if isinstance(action, Ask) else None)
    return action, seen


def test_an_unknown_number_asks_for_the_language_and_speaks_it_afterwards() -> None:
    done, seen = drive(IvrRun(FLOW, dialled="100"), ["2", "1", "2", "3"])
    assert isinstance(seen[0], Ask) and seen[0].name == "language" and len(seen[0].sounds) == 2
    assert done.language == "en" and done.answers == {"temperature": "hot", "purpose": "renewal", "price_tier": "high"}
    assert all(s.endswith("-en") for a in seen[1:] for s in a.sounds)


def test_a_wrong_key_plays_the_invalid_prompt_and_asks_again() -> None:
    done, seen = drive(IvrRun(FLOW, dialled="74951234567"), ["9", "2", "1", "1"])
    asks = [a for a in seen if isinstance(a, Ask)]
    assert asks[1].sounds == ("acd/main/invalid-ru", "acd/main/temperature-ru")
    assert done.answers["temperature"] == "cold" and done.how["temperature"] == "caller"


def test_silence_after_the_retries_records_the_default_and_known_answers_are_not_asked() -> None:
    done, seen = drive(IvrRun(FLOW, dialled="74951234567", known={"purpose": "training"}), [None] * 6)
    assert done.answers == {"temperature": "cold", "purpose": "training", "price_tier": "mid"}
    assert done.how == {"temperature": "default", "purpose": "known", "price_tier": "default"}
    assert [a.name for a in seen if isinstance(a, Ask)] == ["temperature"] * 3 + ["price_tier"] * 3


def test_a_stateless_renderer_can_resume_the_run_from_its_state() -> None:
    run = IvrRun(FLOW, dialled="74951234567")
    run.step()
    ask = run.step()
    assert isinstance(ask, Ask)
    resumed = IvrRun.resume(FLOW, run.state())
    nxt = resumed.step("1")
    assert isinstance(nxt, Ask) and nxt.name == "purpose" and resumed.answers == {"temperature": "hot"}


async def test_the_classic_agi_script_runs_the_same_flow_through_pyst2() -> None:
    """Asterisk's side of classic AGI: the env block on stdin, one reply line per command."""
    env = {"agi_request": "/usr/bin/python3", "agi_channel": "PJSIP/trunk-00000001", "agi_dnid": "74951234567"}
    keys = iter("213")

    def reply(line: str) -> str:
        if line.startswith("GET DATA"):
            return f"200 result={next(keys)}"
        return "200 result=0 endpos=8000" if line.startswith("STREAM FILE") else "200 result=1"

    commands = await classic_agi(env, reply)
    assert [c for c in commands if c.startswith("SET VARIABLE")] == [
        'SET VARIABLE "IVR_LANGUAGE" "ru"',
        'SET VARIABLE "IVR_TEMPERATURE" "cold"',
        'SET VARIABLE "IVR_PURPOSE" "purchase"',
        'SET VARIABLE "IVR_PRICE_TIER" "high"',
    ]
    assert sum(c.startswith("GET DATA") for c in commands) == 3


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are not installed (apt-get install -y espeak-ng sox)",
)
def test_acd_prompts_generate_writes_8khz_mono_sounds_and_keeps_existing_ones(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    recorded = tmp_path / "acd" / "main" / "greeting-ru.wav"
    recorded.parent.mkdir(parents=True)
    recorded.write_bytes(b"a recording")
    assert acd(["prompts", "generate", "--config", str(EXAMPLE), "--sounds-dir", str(tmp_path)]) == 0
    assert recorded.read_bytes() == b"a recording"
    with wave.open(str(tmp_path / "acd" / "main" / "temperature-en.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2) and w.getnframes() > 8000
    assert (tmp_path / "acd" / "common" / "position-ru.wav").exists()
    assert "1 kept" in capsys.readouterr().out


def test_queue_log_lines_follow_app_queue_format(tmp_path: Path) -> None:
    log = QueueLog(tmp_path / "queue_log", clock=lambda: 1795384514.7)
    log.write("ENTERQUEUE", "1795384514.3", "sales", "NONE", "", "79161112233", 1)
    log.write("CONNECT", "1795384514.3", "sales", "anna", 12, "1795384526.5", 3)
    log.close()
    assert (tmp_path / "queue_log").read_text().splitlines() == [
        "1795384514|1795384514.3|sales|NONE|ENTERQUEUE||79161112233|1",
        "1795384514|1795384514.3|sales|anna|CONNECT|12|1795384526.5|3",
    ]


def test_the_shipped_dialplan_calls_only_routes_the_server_has_and_includes_the_settings_once() -> None:
    import re

    from acd.telephony.calls import CallDesk

    conf = ROOT / "asterisk_conf"
    dialplan = (conf / "extensions.conf").read_text()
    routes = set(re.findall(r"agi://\$\{ACD_HOST\}:\$\{ACD_AGI_PORT\}/(\w+)", dialplan))
    desk = CallDesk.__new__(CallDesk)
    assert routes == {"ivr", "wait", "answered", "hangup", "transfer"} and all(hasattr(desk, r) for r in routes)
    contexts = ("acd-in", "acd-transfer", "acd-answered", "acd-fallback", "acd-callback", "acd-clicktocall")
    for context in (*contexts, "acd-outbound"):
        assert f"[{context}]" in dialplan
    assert "#include acd.conf" in dialplan and "#include acd.conf" in (conf / "manager.conf").read_text()
    assert "[acd-fallback]" in (conf / "queues.conf").read_text()
    settings = (conf / "acd.conf").read_text()
    assert "secret = CHANGE_ME" in settings and "permit = " in settings
