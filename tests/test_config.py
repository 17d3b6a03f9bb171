"""Configuration as data: the example deployment loads, and every kind of mistake is named by file and key."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from acd.config import ConfigError, Deployment, check, load_deployment
from acd.core.model import Channel
from acd.core.policy import DEFAULT_STEPS, ChannelRules, EscalationStep, Pool, Strategy

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "acd.example.yaml"
FLOWS = REPO / "ivr_flows"
MSK = ZoneInfo("Europe/Moscow")


def at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    """POSIX seconds of a Moscow wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=MSK).timestamp()


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def write_config(tmp_path: Path, change: Callable[[dict[str, Any]], object] = lambda c: None) -> Path:
    """The example with `change` applied, written to tmp_path; it keeps using the repo's IVR flows."""
    data = example_data()
    data["flows_dir"] = str(FLOWS)
    change(data)
    path = tmp_path / "acd.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(path, environ={})
    assert caught.value.problems == check(path, environ={})
    return caught.value.problems


@pytest.fixture(scope="module")
def example() -> Deployment:
    return load_deployment(EXAMPLE, environ={})


# ---- the example -------------------------------------------------------------------------


def test_the_example_deployment_has_no_problems() -> None:
    assert check(EXAMPLE, environ={}) == []


def test_the_example_builds_the_routing_policy_with_its_version_and_escalation_steps(example: Deployment) -> None:
    policy = example.policy
    assert policy.version == "2026-11-23.1"
    assert policy.strategy is Strategy.BEST_MATCH
    assert policy.steps == DEFAULT_STEPS
    assert policy.steps[-1] == EscalationStep(Pool.ANY, None)
    assert policy.default_team == "sales"
    assert policy.missed_offers_to_pause == 1
    assert policy.inactivity_pause == 600
    assert policy.voice_is_exclusive is True
    assert policy.hold_outside_hours is False  # empty steps are skipped at once, night or day


def test_holding_contacts_outside_working_hours_is_a_policy_switch(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda c: c["policy"].update(hold_outside_hours=True))
    assert load_deployment(path, environ={}).policy.hold_outside_hours is True
    path = write_config(tmp_path, lambda c: c["policy"].update(hold_outside_hours="at night"))
    assert any("policy.hold_outside_hours" in p for p in problems_of(path))


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda c: c["server"].update(trusted_proxies=["127.0.0.1", "10.0.0.0/8"]))
    assert load_deployment(path, environ={}).server.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    path = write_config(tmp_path, lambda c: c["server"].update(trusted_proxies=["nginx.local"]))
    assert any("server.trusted_proxies" in p for p in problems_of(path))


def test_the_example_policy_takes_weights_skills_and_priorities_from_the_criteria_options(
    example: Deployment,
) -> None:
    policy = example.policy
    assert policy.segment_keys == ("temperature", "purpose", "price_tier")
    assert policy.value_weights["price_tier"] == {"low": 0.5, "mid": 1.0, "high": 3.0}
    assert policy.value_weights["temperature"]["hot"] > policy.value_weights["temperature"]["cold"]
    assert policy.skills_by_answer["purpose"] == {
        "purchase": ("sales",),
        "renewal": ("renewals",),
        "training": ("training",),
    }
    assert policy.priority_by_answer["temperature"] == {"hot": 10, "cold": 0}


def test_the_example_sets_offer_timeouts_wrap_up_and_capacities_per_channel(example: Deployment) -> None:
    policy = example.policy
    assert policy.rules(Channel.CALL) == ChannelRules(offer_timeout=20, wrap_up=30)
    assert policy.rules(Channel.WEB).offer_timeout == 120
    assert policy.rules(Channel.EMAIL).offer_timeout == 300
    assert policy.default_capacity == {Channel.CALL: 1, Channel.CALLBACK: 1, Channel.WEB: 5, Channel.EMAIL: 10}


def test_the_example_calendar_knows_weekly_hours_holidays_and_each_teams_own_hours(example: Deployment) -> None:
    calendar = example.policy.calendar
    assert calendar.tz == "Europe/Moscow"
    assert calendar.is_open("sales", at(2026, 11, 23, 10, 0))  # a Monday
    assert not calendar.is_open("sales", at(2026, 11, 23, 18, 0))
    assert not calendar.is_open("sales", at(2026, 11, 28, 12, 0))  # a Saturday
    assert not calendar.is_open("sales", at(2026, 6, 12, 12, 0))  # Russia Day
    assert not calendar.is_open("sales", at(2026, 1, 5, 12, 0))  # inside the New Year range
    assert calendar.is_open("logistics", at(2026, 11, 23, 8, 30))
    assert not calendar.is_open("sales", at(2026, 11, 23, 8, 30))
    assert not calendar.is_open("logistics", at(2026, 6, 12, 12, 0))  # site holidays apply to teams
    assert example.teams["logistics"].schedule is calendar.schedule("logistics")


def test_the_example_managers_get_the_defaults_they_do_not_override(example: Deployment) -> None:
    managers = {m.id: m for m in example.managers}
    assert len(managers) == 6
    anna, boris, vera = managers["anna"], managers["boris"], managers["vera"]
    assert anna.name == "Анна Соколова" and anna.team == "sales" and anna.device == "PJSIP/101"
    assert anna.skills == {"sales": 5, "renewals": 3, "english": 4}
    assert anna.languages == frozenset({"ru", "en"})
    assert boris.languages == frozenset({"ru"})
    assert boris.capacity[Channel.WEB] == 5 and vera.capacity[Channel.WEB] == 8
    assert vera.capacity[Channel.CALL] == 1
    assert [m.order for m in example.managers] == [1, 2, 3, 4, 5, 6]
    assert managers["egor"].daily_cap == 40 and anna.daily_cap is None


def test_the_example_declares_criteria_skills_teams_and_funnel_stages(example: Deployment) -> None:
    assert example.site_name and example.tz == "Europe/Moscow"
    assert example.languages == ("ru", "en") and example.default_language == "ru"
    purpose = example.criterion("purpose")
    assert purpose is not None and purpose.default == "purchase"
    assert [(o.key, o.value) for o in purpose.options] == [("1", "purchase"), ("2", "renewal"), ("3", "training")]
    renewal = purpose.by_key("2")
    assert renewal is not None and renewal.label["en"] == "Licence renewal"
    assert set(example.skills) == {"sales", "renewals", "training", "english"}
    assert set(example.teams) == {"sales", "service", "logistics"}
    assert [(s.name, s.team) for s in example.funnel_stages] == [
        ("qualification", "sales"),
        ("approval", "sales"),
        ("delivery", "logistics"),
        ("feedback", "service"),
    ]
    delivery = example.stage("delivery")
    assert delivery is not None and delivery.route_to == "team"


def test_the_example_ivr_flow_asks_the_three_criteria_with_their_keys_and_defaults(example: Deployment) -> None:
    flow = example.flows["main"]
    assert [q.criterion for q in flow.questions] == ["temperature", "purpose", "price_tier"]
    temperature, purpose, price = flow.questions
    assert temperature.keys == {"1": "hot", "2": "cold"}
    assert temperature.default == "cold" and temperature.timeout == 5 and temperature.retries == 2
    assert purpose.skip_if_known and not temperature.skip_if_known
    assert price.default == "mid"
    assert temperature.prompt.text("ru").startswith("Если вы готовы")
    assert temperature.prompt.sound("en") == "acd/main/temperature-en"
    assert flow.language.for_number("+74957654321") == "en"
    assert flow.language.choose is not None and flow.language.choose.keys == {"1": "ru", "2": "en"}


def test_every_prompt_of_a_flow_is_listed_once_with_a_stable_sound_name(example: Deployment) -> None:
    prompts = list(example.flows["main"].prompts())
    sounds = [sound for sound, _lang, _text in prompts]
    assert len(sounds) == len(set(sounds))
    assert ("acd/main/greeting-ru", "ru") in [(s, lang) for s, lang, _ in prompts]
    assert all(sound.startswith("acd/main/") and sound.endswith(f"-{lang}") for sound, lang, _ in prompts)


# ---- secrets and the environment ----------------------------------------------------------


def test_the_ami_secret_comes_from_the_environment_and_never_from_the_file(example: Deployment) -> None:
    assert example.asterisk.ami.secret_env == "ACD_AMI_SECRET"
    assert example.asterisk.ami.secret is None
    loaded = load_deployment(EXAMPLE, environ={"ACD_AMI_SECRET": "s3cret-value"})
    assert loaded.asterisk.ami.secret == "s3cret-value"
    assert "s3cret-value" not in repr(loaded.asterisk)
    assert "secret:" not in EXAMPLE.read_text(encoding="utf-8")


def test_a_secret_written_into_the_file_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda c: c["asterisk"]["ami"].update(secret="hunter2"))
    assert problems_of(path) == [f"{path}: asterisk.ami.secret: {_SECRET_MESSAGE}"]


_SECRET_MESSAGE = "secrets never go in this file: name the environment variable that holds it (secret_env)"


def test_the_database_url_may_come_from_the_environment(tmp_path: Path) -> None:
    loaded = load_deployment(EXAMPLE, environ={"ACD_DB_URL": "postgresql+asyncpg://acd@db/acd"})
    assert loaded.server.db_url == "postgresql+asyncpg://acd@db/acd"
    assert loaded.server.port == 8080 and loaded.asterisk.fastagi.port == 4573


# ---- mistakes -----------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets a dotted path, e.g. "criteria.1.options.0.key"."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return change


MISTAKES = [
    (_set("criteria.1.options.0.key", "12"), "criteria[1].options[0].key: must be one DTMF key 0-9, * or #"),
    (_set("criteria.0.options.1.key", 1), "criteria[0].options[1].key: key '1' is already used by criteria[0]"),
    (_set("criteria.2.default", "huge"), "criteria[2].default: 'huge' is not one of the options' values"),
    (_set("criteria.1.options.0.skills", ["selling"]), "criteria[1].options[0].skills[0]: no skill named 'selling'"),
    (_set("criteria.0.segment", "yes"), "criteria[0].segment: must be a valid boolean"),
    (_set("criteria.0.options.0.label", {"ru": "Горячий"}), "criteria[0].options[0].label: has no en text"),
    (_set("skills.sales", {"ru": "Продажи", "en": "Sales", "de": "Verkauf"}), "skills.sales.de: 'de' is not a site"),
    (_set("site.tz", "Europe/Moskva"), "site.tz: unknown time zone 'Europe/Moskva'"),
    (_set("teams.logistics.hours.tz", "Mars/Base"), "teams.logistics.hours.tz: unknown time zone"),
    (_set("hours.week", ["mon-fri: 18:00-09:00"]), "hours.week[0]: interval '18:00-09:00' must start before it ends"),
    (_set("hours.week", ["mon-fry: 09:00-18:00"]), "hours.week[0]: unknown weekday 'fry'"),
    (_set("hours.holidays", ["2026-13-01"]), "hours.holidays[0]: must be a date 2026-01-01 or a range"),
    (_set("managers.1.team", "marketing"), "managers[1].team: no team named 'marketing'"),
    (_set("managers.0.skills", {"cooking": 3}), "managers[0].skills.cooking: no skill named 'cooking'"),
    (_set("managers.0.skills", {"sales": 7}), "managers[0].skills.sales: must be less than or equal to 5"),
    (_set("managers.0.languages", ["ru", "de"]), "managers[0].languages[1]: 'de' is not a site language"),
    (_set("managers.1.id", "anna"), "managers[1].id: id 'anna' is already used by managers[0]"),
    (_set("managers.1.device", "PJSIP/101"), "managers[1].device: device 'PJSIP/101' is already used by managers[0]"),
    (_set("managers.0.device", "101"), "managers[0].device: must be an Asterisk dial string such as PJSIP/101"),
    (_set("manager_defaults.capacity", {"web": -1}), "manager_defaults.capacity.web: must be greater than or equal"),
    (_set("manager_defaults.capacity", {"email": 2.5}), "manager_defaults.capacity.email: must be a valid integer"),
    (_set("manager_defaults.capacity", {"fax": 1}), "manager_defaults.capacity.fax: must be 'call', 'callback'"),
    (_set("funnel_stages.2.team", "warehouse"), "funnel_stages[2].team: no team named 'warehouse'"),
    (_set("funnel_stages.0.route_to", "boss"), "funnel_stages[0].route_to: must be 'owner' or 'team'"),
    (_set("channels.call.offer_timeout", "soon"), "channels.call.offer_timeout: must be a duration"),
    (_set("policy.strategy", "smartest"), "policy.strategy: must be 'best-match', 'leastrecent'"),
    (_set("policy.default_team", "marketing"), "policy.default_team: no team named 'marketing'"),
    (_set("policy.version", date(2026, 11, 23)), 'policy.version: must be a quoted string, e.g. "2026-11-23.1"'),
    (_set("policy.steps.3.pool", "everyone"), "policy.steps[3].pool: must be 'preferred', 'team', 'skill' or 'any'"),
    (_set("policy.steps.1", {"pool": "team"}), "policy.steps[1].timeout: only the last step may wait without"),
    (_set("policy.steps.0.timeout", 0), "policy.steps[0].timeout: must be more than 0 seconds"),
    (_set("policy.stratgy", "random"), "policy.stratgy: unknown key (misspelt, or not allowed here)"),
    (_drop("policy"), "policy: required key is missing"),
]


@pytest.mark.parametrize(("change", "expected"), MISTAKES, ids=[expected.split(":")[0] for _, expected in MISTAKES])
def test_each_kind_of_mistake_is_named_by_file_and_dotted_key(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    path = write_config(tmp_path, change)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def test_every_mistake_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["managers"][0]["team"] = "marketing"
        data["funnel_stages"][0]["team"] = "warehouse"
        data["policy"]["default_team"] = "nobody"

    problems = problems_of(write_config(tmp_path, change))
    assert [p.split(": ")[1] for p in problems] == ["managers[0].team", "funnel_stages[0].team", "policy.default_team"]


def test_problems_name_the_file_as_the_administrator_wrote_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    shutil.copytree(FLOWS, tmp_path / "ivr_flows")
    data = example_data()
    data["criteria"][1]["options"][0]["key"] = "A"
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    (tmp_path / "config" / "acd.example.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert check("config/acd.example.yaml") == [
        "config/acd.example.yaml: criteria[1].options[0].key: must be one DTMF key 0-9, * or # (quote * and # in YAML)"
    ]


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "acd.yaml"
    path.write_text("site:\n  name: Ромашка\n  tz: Europe/Moscow\n    languages: [ru]\npolicy: {}\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 4: ")


def test_a_key_written_twice_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "acd.yaml"
    path.write_text('site:\n  name: A\npolicy:\n  version: "1"\n  version: "2"\n', encoding="utf-8")
    assert problems_of(path) == [f"{path}: line 5: duplicate key 'version' (first at line 4) (column 3)"]


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: cannot read the file")


def test_a_file_that_is_not_a_mapping_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "acd.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    assert problems_of(path) == [f"{path}: the file must be a mapping of sections (site, criteria, teams, policy...)"]


def test_text_holding_a_nul_character_is_a_problem_that_names_its_key(tmp_path: Path) -> None:
    """YAML's "\\0": SQLite stores it, PostgreSQL refuses it, so the server would start on
    one database and stop at start on the other."""

    def change(data: dict[str, Any]) -> None:
        data["managers"][0]["name"] = "Анна\0"
        data["teams"]["sales"]["label"]["ru"] = "Отдел\0продаж"

    path = write_config(tmp_path, change)
    nul = 'holds the NUL character ("\\0"), which the database cannot store'
    assert problems_of(path) == [f"{path}: teams.sales.label.ru: {nul}", f"{path}: managers[0].name: {nul}"]


# ---- values written in friendly forms -------------------------------------------------------


def test_durations_take_units_and_hours_may_run_to_midnight(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["auto_pause"]["inactivity"] = "1h30m"
        data["hours"]["week"] = ["mon-fri: 09:00-13:00, 14:00-18:00", "sat: 20:00-24:00"]

    loaded = load_deployment(write_config(tmp_path, change), environ={})
    assert loaded.policy.inactivity_pause == 5400
    calendar = loaded.policy.calendar
    assert not calendar.is_open(None, at(2026, 11, 23, 13, 30))
    assert calendar.is_open(None, at(2026, 11, 28, 23, 59))
    assert calendar.is_open("service", at(2026, 11, 28, 23, 59))  # teams without hours use the site's


def test_omitted_sections_get_defaults(tmp_path: Path) -> None:
    path = tmp_path / "acd.yaml"
    path.write_text('site: {name: Tiny}\nflows_dir: null\npolicy: {version: "1"}\n', encoding="utf-8")
    loaded = load_deployment(path, environ={})
    assert loaded.languages == ("en",) and loaded.tz == "UTC"
    assert loaded.policy.steps == DEFAULT_STEPS
    assert loaded.policy.calendar.is_open(None, at(2026, 1, 1, 3, 0))
    assert loaded.flows == {} and loaded.managers == ()
    assert loaded.asterisk.fastagi.host == "127.0.0.1"


# ---- IVR flows ---------------------------------------------------------------------------------


def write_flow(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> tuple[Path, Path]:
    flows = tmp_path / "flows"
    flows.mkdir()
    flow = yaml.safe_load((FLOWS / "main.yaml").read_text(encoding="utf-8"))
    change(flow)
    flow_path = flows / "main.yaml"
    flow_path.write_text(yaml.safe_dump(flow, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return write_config(tmp_path, lambda c: c.update(flows_dir="flows")), flow_path


FLOW_MISTAKES = [
    (_set("questions.0.criterion", "mood"), "questions[0].criterion: no criterion named 'mood'"),
    (_set("questions.1.keys", ["1", "7"]), "questions[1].keys[1]: key '7' is not one of purpose's keys"),
    (_set("questions.2.default", "huge"), "questions[2].default: 'huge' is not one of price_tier's values"),
    (_set("questions.2.timeout", -1), "questions[2].timeout: must be more than 0 seconds"),
    (_set("questions.0.retires", 3), "questions[0].retires: unknown key"),
    (_set("questions.1.criterion", "temperature"), "questions[1].criterion: 'temperature' is already asked by"),
    (_set("greeting", {"ru": "Здравствуйте"}), "greeting: has no en text"),
    (_set("language.default", "de"), "language.default: language 'de' is not one of the site languages"),
    (_set("language.choose.keys", {"1": "ru", "x": "en"}), "language.choose.keys.x: must be one DTMF key"),
    (_set("language.by_number", {"not-a-number": "ru"}), "language.by_number.not-a-number: must be a dialled number"),
]


@pytest.mark.parametrize(
    ("change", "expected"), FLOW_MISTAKES, ids=[expected.split(":")[0] for _, expected in FLOW_MISTAKES]
)
def test_each_kind_of_flow_mistake_is_named_by_the_flow_file_and_key(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    config, flow = write_flow(tmp_path, change)
    problems = problems_of(config)
    assert any(p.startswith(f"{flow}: {expected}") for p in problems), problems


def test_a_question_may_override_its_prompt_in_one_language_and_offer_fewer_keys(tmp_path: Path) -> None:
    def change(flow: dict[str, Any]) -> None:
        flow["questions"][1].update(prompt={"en": "Buying or renewing?"}, keys=[1, 2])

    config, _ = write_flow(tmp_path, change)
    purpose = load_deployment(config, environ={}).flows["main"].questions[1]
    assert purpose.prompt.text("en") == "Buying or renewing?"
    assert purpose.prompt.text("ru").startswith("Покупка")
    assert purpose.keys == {"1": "purchase", "2": "renewal"}


def test_a_flow_file_may_end_in_yml_and_what_editors_leave_beside_flows_is_not_read(tmp_path: Path) -> None:
    config, main = write_flow(tmp_path, lambda flow: None)
    main.rename(main.with_suffix(".yml"))  # as many editors and tools name YAML files
    (main.parent / ".#sales.yaml").symlink_to("root@office.12345:1700000000")  # Emacs' lock on a flow being edited
    (main.parent / ".sales.yaml.swp").write_bytes(b"\x00vim swap")
    assert "main" in load_deployment(config, environ={}).flows
    yml = main.with_suffix(".yml")
    main.write_text(yml.read_text(encoding="utf-8"), encoding="utf-8")
    (problem,) = problems_of(config)
    assert problem == f"{yml}: a second file for the flow 'main': keep one of main.yaml and main.yml"


def test_a_missing_flows_directory_is_a_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda c: c.update(flows_dir="no-such-dir"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: flows_dir: no directory")


def test_deployment_values_are_frozen(example: Deployment) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.policy.version = "other"  # type: ignore[misc]


def test_an_unclosed_quote_names_the_line_where_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "acd.yaml"
    path.write_text('site:\n  name: "Ромашка\npolicy:\n  version: "1"\n', encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line ") and "at line 2" in problem


# ---- dates and weekly hours as administrators type them -----------------------------------


def example_text(tmp_path: Path, old: str, new: str) -> Path:
    """The example file as text, with one line edited the way an administrator would."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("flows_dir: ../ivr_flows", f"flows_dir: {FLOWS}")
    assert old in text
    path = tmp_path / "acd.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("typo", ["2026-02-30", "2026-13-01", "2026-02-23..2026-02-30"])
def test_an_impossible_holiday_date_is_a_problem_that_names_its_key(tmp_path: Path, typo: str) -> None:
    """Unquoted, YAML reads 2026-02-30 as a date and PyYAML raised ValueError: a traceback
    from check-config, serve and a reload."""
    path = example_text(tmp_path, "- 2026-02-23 ", f"- {typo} ")
    (problem,) = problems_of(path)
    assert problem == (
        f"{path}: hours.holidays[1]: must be a date 2026-01-01 or a range 2026-01-01..2026-01-08 "
        f"(got '{typo}': {'month must be in 1..12' if '-13-' in typo else 'day is out of range for month'})"
    )


def test_an_impossible_date_in_an_ivr_flow_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    config, flow = write_flow(tmp_path, lambda f: None)
    flow.write_text(flow.read_text(encoding="utf-8") + "updated: 2026-11-31\n", encoding="utf-8")
    assert problems_of(config) == [f"{flow}: updated: unknown key (misspelt, or not allowed here)"]


def test_a_value_yaml_cannot_build_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path = example_text(tmp_path, "  port: 8080", "  port: !!int eighty")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 24: cannot read 'eighty' as int"), problem


def test_a_holiday_is_a_whole_day(tmp_path: Path) -> None:
    path = example_text(tmp_path, "- 2026-02-23 ", "- 2026-02-23 10:00:00 ")
    assert problems_of(path) == [
        f"{path}: hours.holidays[1]: a holiday is a whole day: write the date without a time, e.g. 2026-01-01"
    ]


def test_a_week_line_written_without_quotes_means_the_same_line(tmp_path: Path) -> None:
    """`- mon-fri: 09:00-18:00` is a one-key mapping to YAML: it was refused as
    "must be a valid string", with no hint that quotes were missing."""
    path = example_text(
        tmp_path,
        '        - "mon-fri: 08:00-17:00"',
        "        - mon-fri: 08:00-12:00, 13:00-17:00\n        - sat: 10:00-14:00",
    )
    calendar = load_deployment(path, environ={}).policy.calendar
    assert calendar.is_open("logistics", at(2026, 11, 23, 8, 30))  # a Monday
    assert not calendar.is_open("logistics", at(2026, 11, 23, 12, 30))  # lunch
    assert calendar.is_open("logistics", at(2026, 11, 28, 11, 0))  # a Saturday
    assert not calendar.is_open("logistics", at(2026, 11, 28, 14, 0))


def test_a_week_line_that_is_not_a_line_says_how_to_write_one(tmp_path: Path) -> None:
    path = example_text(tmp_path, '    - "mon-fri: 09:00-18:00"\n  holidays', "    - sat: 10:00\n  holidays")
    assert problems_of(path) == [
        f'{path}: hours.week[0]: must be one quoted line per list item, e.g. - "mon-fri: 09:00-18:00"'
    ]
    path = example_text(tmp_path, '    - "mon-fri: 09:00-18:00"\n  holidays', "    -\n  holidays")
    assert problems_of(path) == [
        f'{path}: hours.week[0]: must be a line such as "mon-fri: 09:00-18:00" in quotes (got None)'
    ]


def test_check_config_lists_an_impossible_holiday_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from acd.cli import check_config

    path = example_text(tmp_path, "- 2026-11-04 ", "- 2026-11-31 ")
    assert check_config(path) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"{path}: hours.holidays[6]: must be a date 2026-01-01 or a range 2026-01-01..2026-01-08 "
        "(got '2026-11-31': day is out of range for month)",
        f"{path}: 1 problem(s)",
    ]


def test_a_later_week_line_cannot_silently_leave_a_short_friday_open(tmp_path: Path) -> None:
    """A day's intervals are the union of its lines: "fri: 09:00-16:45" after "mon-fri:
    09:00-18:00" was accepted and Friday stayed open until 18:00."""
    path = example_text(
        tmp_path, '        - "mon-fri: 08:00-17:00"', '        - "mon-fri: 09:00-18:00"\n        - "fri: 09:00-16:45"'
    )
    assert problems_of(path) == [
        f"{path}: teams.logistics.hours.week[1]: fri 09:00-16:45 overlaps 09:00-18:00 from "
        "teams.logistics.hours.week[0]: a day's hours add up over every line that names it, so to give fri "
        "other hours leave it out of the other line (e.g. mon-thu and fri apart)"
    ]
    path = example_text(tmp_path, '    - "mon-fri: 09:00-18:00"', '    - "mon-fri: 09:00-18:00, 17:00-20:00"')
    assert problems_of(path) == [f"{path}: hours.week[0]: mon 17:00-20:00 overlaps 09:00-18:00 in the same line"]


def test_week_lines_that_only_touch_add_up(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        '        - "mon-fri: 08:00-17:00"',
        '        - "mon-thu: 09:00-18:00"\n        - "fri: 09:00-16:45"\n'
        '        - "mon-fri: 18:00-24:00"\n        - "sat: 00:00-06:00"',
    )
    calendar = load_deployment(path, environ={}).policy.calendar
    assert calendar.is_open("logistics", at(2026, 11, 26, 17, 0))  # a Thursday
    assert not calendar.is_open("logistics", at(2026, 11, 27, 17, 0))  # Friday: short
    assert calendar.is_open("logistics", at(2026, 11, 27, 23, 0))  # Friday night
    assert calendar.is_open("logistics", at(2026, 11, 28, 5, 59))  # ...into Saturday
    assert not calendar.is_open("logistics", at(2026, 11, 28, 6, 0))


# ---- numbers YAML allows and no setting means; keys that collide; files not in UTF-8 ----------

NOT_A_DURATION = "must be a duration: seconds (30) or with a unit (30s, 10m, 1h), not .nan"


@pytest.mark.parametrize(
    ("key", "typed", "problem"),
    [
        (
            "  call: {offer_timeout: 20s,",
            "  call: {offer_timeout: .nan,",
            "channels.call.offer_timeout: " + NOT_A_DURATION,
        ),
        ("  inactivity: 10m", "  inactivity: .inf", "auto_pause.inactivity: must be a duration"),
        (
            "  inactivity: 10m",
            "  inactivity: " + "9" * 400 + "h",
            "auto_pause.inactivity: is too long to be a duration",
        ),
        ("    fit: 0.5", "    fit: .inf", "policy.weights.fit: must be an ordinary number, not .inf"),
        (
            "        weight: 1.5",
            "        weight: .NaN",
            "criteria[0].options[0].weight: must be an ordinary number, not .nan",
        ),
        (
            "  prior_strength: 10",
            "  prior_strength: -.inf",
            "crm.prior_strength: must be an ordinary number, not -.inf",
        ),
        (
            "  retry: {attempts: 5, backoff: 30s,",
            "  retry: {attempts: 5, backoff: .nan,",
            "notifications.retry.backoff",
        ),
    ],
)
def test_not_a_number_and_infinity_are_refused_by_key(tmp_path: Path, key: str, typed: str, problem: str) -> None:
    """`offer_timeout: .nan` loaded: an offer that never times out, a weight that poisons every score."""
    path = example_text(tmp_path, key, typed)
    (found,) = problems_of(path)
    assert found.startswith(f"{path}: {problem}"), found


def test_a_dtmf_key_written_both_quoted_and_unquoted_is_a_duplicate(tmp_path: Path) -> None:
    """`keys: {"1": ru, 1: en}` kept only en for key 1: YAML's 1 and "1" are one key once read."""
    config, flow = write_flow(tmp_path, lambda f: None)
    text = flow.read_text(encoding="utf-8")
    assert "'1': ru" in text
    flow.write_text(text.replace("'1': ru", "'1': ru\n      1: en", 1), encoding="utf-8")
    line = flow.read_text(encoding="utf-8").splitlines().index("      1: en") + 1
    (problem,) = problems_of(config)
    assert problem.startswith(f"{flow}: line {line}: duplicate key 1 (first at line {line - 1}, written '1' there)")


def test_text_keys_that_collide_once_read_as_text_are_a_duplicate() -> None:
    from acd.config.schema import _str_keys

    with pytest.raises(ValueError, match="duplicate key '1'"):
        _str_keys({"1": "ru", 1: "en"})
    assert _str_keys({1: "ru", "2": "en"}) == {"1": "ru", "2": "en"}


def test_a_file_not_in_utf8_names_its_first_bad_line_and_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "acd.yaml"
    path.write_bytes(text.encode("cp1251", errors="replace"))
    line = next(i for i, s in enumerate(text.splitlines(), 1) if not s.isascii())
    assert problems_of(path) == [
        f"{path}: line {line}: the file is not UTF-8 text: save it as UTF-8 (probably Windows-1251; "
        'in Notepad: "Save as", Encoding: UTF-8; or iconv -f cp1251 -t utf-8)'
    ]
