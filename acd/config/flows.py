"""Adapter: IVR flows (`ivr_flows/*.yaml`) ⇄ frozen flow values the IVR interpreter runs.

A flow greets the caller, settles the language, then asks a few qualification questions,
each one a criterion from the deployment file. Every prompt is a text per language plus a
sound file name; `IvrFlow.prompts()` lists them so a tool can synthesise the sounds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, ValidationError

from acd.config.errors import Loc, Problems
from acd.config.schema import Count, Key, Lang, Name, PositiveSeconds, Spec, Text, _sound, _str_keys

if TYPE_CHECKING:
    from acd.config.deployment import Criterion


# ---- values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    """What to say in each language: the text and the sound file (no extension) that says it."""

    texts: Mapping[str, str]
    sounds: Mapping[str, str]

    def text(self, lang: str) -> str:
        return self.texts[lang]

    def sound(self, lang: str) -> str:
        return self.sounds[lang]


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    prompt: Prompt  # played in every language in turn, since the caller's is not known yet
    keys: Mapping[str, str]  # DTMF key -> language
    timeout: float = 5.0
    retries: int = 1


@dataclass(frozen=True, slots=True)
class LanguageSelection:
    """How a call's language is settled: the dialled number, else the caller's choice, else `default`."""

    default: str
    by_number: Mapping[str, str]  # dialled number, digits only -> language
    choose: LanguageChoice | None = None

    def for_number(self, dialled: str) -> str | None:
        return self.by_number.get(dialled.lstrip("+"))


@dataclass(frozen=True, slots=True)
class Question:
    """One DTMF question; silence after `retries` repeats means `default` (None: left unanswered)."""

    criterion: str
    prompt: Prompt
    keys: Mapping[str, str]  # DTMF key -> option value, only the keys offered on the phone
    timeout: float = 5.0
    retries: int = 2
    invalid: Prompt | None = None
    default: str | None = None
    skip_if_known: bool = False  # a repeat caller whose answer is on file is not asked again


@dataclass(frozen=True, slots=True)
class IvrFlow:
    name: str
    path: Path
    language: LanguageSelection
    questions: tuple[Question, ...]
    greeting: Prompt | None = None
    transfer: Prompt | None = None  # said just before the caller joins the queue

    def prompts(self) -> Iterator[tuple[str, str, str]]:
        """Every (sound, language, text) the flow can play, each sound once."""
        seen: set[str] = set()
        prompts: list[Prompt | None] = [self.language.choose.prompt if self.language.choose else None, self.greeting]
        for q in self.questions:
            prompts += [q.prompt, q.invalid]
        prompts.append(self.transfer)
        for prompt in prompts:
            if prompt is None:
                continue
            for lang, text in prompt.texts.items():
                sound = prompt.sounds[lang]
                if sound not in seen:
                    seen.add(sound)
                    yield sound, lang, text


# ---- file shape --------------------------------------------------------------------------


def _prompt_text(value: Any) -> Any:
    # `ru: "Здравствуйте"` is shorthand for `ru: {text: "Здравствуйте"}`.
    return {"text": value} if isinstance(value, str) else value


class PromptTextSpec(Spec):
    text: Text
    sound: Annotated[str, AfterValidator(_sound)] | None = None


PromptSpec = dict[Lang, Annotated[PromptTextSpec, BeforeValidator(_prompt_text)]]


def _phone(value: str) -> str:
    digits = value.lstrip("+")
    if not (digits.isascii() and digits.isdigit()) or not 3 <= len(digits) <= 15:
        raise ValueError("must be a dialled number: digits, optionally after +")
    return digits


class LanguageChoiceSpec(Spec):
    prompt: PromptSpec
    keys: Annotated[dict[Key, Lang], BeforeValidator(_str_keys), Field(min_length=1)]
    timeout: PositiveSeconds = 5.0
    retries: Count = 1


Phone = Annotated[str, AfterValidator(_phone)]


class LanguageSpec(Spec):
    default: Lang | None = None
    by_number: Annotated[dict[Phone, Lang], BeforeValidator(_str_keys)] = Field(default_factory=dict)
    choose: LanguageChoiceSpec | None = None


class QuestionSpec(Spec):
    criterion: Name
    prompt: PromptSpec = Field(default_factory=dict)
    keys: list[Key] | None = None
    timeout: PositiveSeconds | None = None
    retries: Count | None = None
    invalid: PromptSpec = Field(default_factory=dict)
    default: Name | None = None
    skip_if_known: StrictBool = False


class FlowSpec(Spec):
    language: LanguageSpec = LanguageSpec()
    greeting: PromptSpec = Field(default_factory=dict)
    invalid: PromptSpec = Field(default_factory=dict)
    transfer: PromptSpec = Field(default_factory=dict)
    timeout: PositiveSeconds = 5.0
    retries: Count = 2
    questions: list[QuestionSpec] = Field(default_factory=list)


# ---- checking and building -----------------------------------------------------------------


def build_flow(
    name: str,
    path: Path,
    raw: Any,
    criteria: Sequence[Criterion],
    languages: Sequence[str],
    problems: Problems,
) -> IvrFlow | None:
    """Validate one flow file's parsed YAML against the deployment; None if it has problems."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.whole("the flow must be a mapping of keys (language, greeting, questions...)")
        return None
    try:
        spec = FlowSpec.model_validate(raw)
    except ValidationError as e:
        problems.from_validation(e)
        return None
    before = len(problems.items)
    by_name = {c.name: c for c in criteria}

    def lang_ok(loc: Loc, lang: str) -> None:
        if lang not in languages:
            problems.add(loc, f"language {lang!r} is not one of the site languages ({', '.join(languages)})")

    def texts_ok(loc: Loc, prompt: PromptSpec, complete: bool, required: bool = False) -> None:
        for lang in prompt:
            lang_ok((*loc, lang), lang)
        if complete and (prompt or required):
            for lang in languages:
                if lang not in prompt:
                    problems.add(loc, f"has no {lang} text (every site language needs one)")

    lang = spec.language
    if lang.default is not None:
        lang_ok(("language", "default"), lang.default)
    for number, code in lang.by_number.items():
        lang_ok(("language", "by_number", number), code)
    if lang.choose:
        texts_ok(("language", "choose", "prompt"), lang.choose.prompt, complete=True, required=True)
        for key, code in lang.choose.keys.items():
            lang_ok(("language", "choose", "keys", key), code)
    for key in ("greeting", "invalid", "transfer"):
        texts_ok((key,), getattr(spec, key), complete=True)

    asked: dict[str, int] = {}
    for i, q in enumerate(spec.questions):
        loc: Loc = ("questions", i)
        texts_ok((*loc, "prompt"), q.prompt, complete=False)
        texts_ok((*loc, "invalid"), q.invalid, complete=False)
        if q.criterion in asked:
            problems.add((*loc, "criterion"), f"{q.criterion!r} is already asked by questions[{asked[q.criterion]}]")
        asked.setdefault(q.criterion, i)
        crit = by_name.get(q.criterion)
        if crit is None:
            problems.add((*loc, "criterion"), f"no criterion named {q.criterion!r} in the deployment file")
            continue
        own_keys = {o.key for o in crit.options}
        for j, key in enumerate(q.keys or ()):
            if key not in own_keys:
                problems.add(
                    (*loc, "keys", j), f"key {key!r} is not one of {crit.name}'s keys ({', '.join(sorted(own_keys))})"
                )
        if q.default is not None and crit.option(q.default) is None:
            values = ", ".join(o.value for o in crit.options)
            problems.add((*loc, "default"), f"{q.default!r} is not one of {crit.name}'s values ({values})")
    if len(problems.items) > before:
        return None

    def prompt(spec_texts: PromptSpec, stem: str, fallback: Prompt | None = None) -> Prompt | None:
        texts = dict(fallback.texts) if fallback else {}
        sounds = dict(fallback.sounds) if fallback else {}
        for code, t in spec_texts.items():
            texts[code] = t.text
            sounds[code] = t.sound or f"acd/{name}/{stem}-{code}"
        return Prompt(texts, sounds) if texts else None

    flow_invalid = prompt(spec.invalid, "invalid")
    questions = []
    for q in spec.questions:
        crit = by_name[q.criterion]
        # The criterion's own prompt is the fallback; it gets this flow's sound name so that
        # every file the flow plays is under acd/<flow>/.
        base = Prompt(dict(crit.prompt), {code: f"acd/{name}/{crit.name}-{code}" for code in crit.prompt})
        offered = q.keys if q.keys is not None else [o.key for o in crit.options]
        questions.append(
            Question(
                criterion=crit.name,
                prompt=prompt(q.prompt, crit.name, base) or base,
                keys={o.key: o.value for o in crit.options if o.key in offered},
                timeout=q.timeout if q.timeout is not None else spec.timeout,
                retries=q.retries if q.retries is not None else spec.retries,
                invalid=prompt(q.invalid, f"{crit.name}-invalid", flow_invalid),
                default=q.default if q.default is not None else crit.default,
                skip_if_known=q.skip_if_known,
            )
        )
    choose = None
    if lang.choose:
        choose_prompt = prompt(lang.choose.prompt, "language")
        assert choose_prompt is not None  # checked: at least every site language
        choose = LanguageChoice(choose_prompt, dict(lang.choose.keys), lang.choose.timeout, lang.choose.retries)
    return IvrFlow(
        name=name,
        path=path,
        language=LanguageSelection(lang.default or languages[0], dict(lang.by_number), choose),
        questions=tuple(questions),
        greeting=prompt(spec.greeting, "greeting"),
        transfer=prompt(spec.transfer, "transfer"),
    )
