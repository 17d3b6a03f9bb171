"""The deployment file's email, notifications and twilio sections: problems name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fixtures import EXAMPLE

from acd.config import ConfigError, load_deployment


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "config" / "acd.yaml"  # flows_dir is ../ivr_flows, as in the repository
    path.parent.mkdir(parents=True)
    path.write_text(text.replace(old, new), encoding="utf-8")
    (tmp_path / "ivr_flows").symlink_to(EXAMPLE.parent.parent / "ivr_flows")
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={} if environ is None else environ)
    return err.value.problems


def test_the_example_reads_keywords_and_keeps_secrets_out_of_the_file() -> None:
    d = load_deployment(EXAMPLE, environ={})
    assert d.email.keywords["purpose"]["renewal"][0] == "лиценз"
    assert d.notifications.templates["received"].body["en"].startswith("Hello")
    assert d.twilio is None


def test_a_keyword_for_an_unknown_option_is_named_by_file_and_key(tmp_path: Path) -> None:
    path = variant(tmp_path, "      renewal: [лиценз", "      renewl: [лиценз")
    assert problems(path) == [
        f"{path}: email.keywords.purpose.renewl: 'renewl' is not one of purpose's values (purchase, renewal, training)"
    ]


def test_a_twilio_token_in_the_file_is_refused_and_the_env_variable_is_read(tmp_path: Path) -> None:
    section = (
        "twilio:\n  enabled: true\n  account_sid: AC" + "a" * 32 + "\n  public_url: https://acd.example\n"
        '  numbers: {"+74951234567": main}\n'
    )
    path = variant(tmp_path, "# ---- Twilio (a second", section + "# ---- Twilio (a second")
    d = load_deployment(path, environ={"ACD_TWILIO_AUTH_TOKEN": "t0k3n"})
    assert d.twilio is not None and d.twilio.auth_token == "t0k3n" and "t0k3n" not in repr(d.twilio)
    leaked = variant(
        tmp_path / "x", "# ---- Twilio (a second", section + "  auth_token: t0k3n\n# ---- Twilio (a second"
    )
    assert problems(leaked) == [f"{leaked}: twilio.auth_token: unknown key (misspelt, or not allowed here)"]


def test_quiet_hours_and_an_unknown_flow_are_checked(tmp_path: Path) -> None:
    path = variant(tmp_path, 'quiet_hours: "21:00-09:00"', 'quiet_hours: "21:00-21:00"')
    assert problems(path) == [f"{path}: notifications.quiet_hours: starts and ends at the same time"]
    section = "twilio:\n  account_sid: AC" + "b" * 32 + '\n  public_url: https://x\n  numbers: {"+74951234567": nope}\n'
    other = variant(tmp_path / "y", "# ---- Twilio (a second", section + "# ---- Twilio (a second")
    assert problems(other) == [f"{other}: twilio.numbers.+74951234567: no IVR flow named 'nope' (main)"]
