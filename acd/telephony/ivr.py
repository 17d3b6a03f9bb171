"""Pure: the IVR interpreter — one flow (`ivr_flows/*.yaml`), any renderer.

The interpreter never plays anything: it says what to do next (`Say` a prompt, `Ask` for one
key, or `Done` with the answers), and a renderer carries it out and feeds the caller's key back.
The FastAGI renderer (`acd.telephony.calls`), the classic-AGI script (`acd.telephony.agi_script`)
and a TwiML renderer can therefore run a flow identically. Its whole state is `IvrRun.state()`, a
small JSON-able mapping, so a stateless webhook renderer can resume it with `IvrRun.resume()`.

    run = IvrRun(flow, dialled="74951234567", known={"purpose": "renewal"})
    action = run.step()            # Say(...) / Ask(...)
    while not isinstance(action, Done):
        key = render(action)       # Ask → the key pressed or None; Say → None
        action = run.step(key)

Rules, in order: the language comes from the dialled number, else the caller's key, else the
flow's default. Each question accepts only its keys; a wrong key plays the `invalid` prompt
and asks again, silence asks again, and after `retries` repeats the question's default is
recorded (or nothing, when it has none). A question with `skip_if_known` is not asked when
`known` holds a valid answer for its criterion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acd.config.flows import IvrFlow, Prompt, Question


@dataclass(frozen=True, slots=True)
class Say:
    """Play these sounds in order; no input expected."""

    sounds: tuple[str, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ask:
    """Play these sounds (a key may cut them short), then wait `timeout` s for one of `keys`."""

    sounds: tuple[str, ...]
    texts: tuple[str, ...]
    keys: frozenset[str]
    timeout: float
    name: str  # "language" or the criterion asked


@dataclass(frozen=True, slots=True)
class Done:
    """The flow's outcome. `how[criterion]` is "caller", "default" or "known"."""

    language: str
    answers: Mapping[str, str]
    how: Mapping[str, str] = field(default_factory=dict)


Action = Say | Ask | Done

_LANG = "language"
_GREET = "greeting"
_TRANSFER = "transfer"
_DONE = "done"


class IvrRun:
    """One caller going through one flow."""

    def __init__(self, flow: IvrFlow, dialled: str = "", known: Mapping[str, str] | None = None) -> None:
        self.flow = flow
        self.known = dict(known or {})
        by_number = flow.language.for_number(dialled) if dialled else None
        self.language = by_number or flow.language.default
        self.phase = _GREET if by_number or flow.language.choose is None else _LANG
        self.attempt = 0  # asks of the current phase so far
        self.answers: dict[str, str] = {}
        self.how: dict[str, str] = {}
        self._last: Action | None = None

    # ---- state for stateless renderers -------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "attempt": self.attempt,
            "language": self.language,
            "answers": dict(self.answers),
            "how": dict(self.how),
            "known": dict(self.known),
        }

    @classmethod
    def resume(cls, flow: IvrFlow, state: Mapping[str, Any]) -> IvrRun:
        run = cls(flow)
        run.phase = str(state["phase"])
        questions = (f"q{i}" for i in range(len(flow.questions)))
        if run.phase not in (_LANG, _GREET, _TRANSFER, _DONE, *questions):  # a state of another flow, or forged
            raise ValueError(f"phase {run.phase!r} is not in this flow")
        run.attempt = int(state["attempt"])
        run.language = str(state["language"])
        run.answers = dict(state["answers"])
        run.how = dict(state["how"])
        run.known = dict(state.get("known", {}))
        run._last = Ask((), (), frozenset(), 0.0, run.phase) if run.attempt else None
        return run

    # ---- the interpreter ---------------------------------------------------------------

    def step(self, key: str | None = None) -> Action:
        """The next action, given the key pressed in answer to the last `Ask` (None: silence)."""
        last, self._last = self._last, None
        if isinstance(last, Ask):
            action = self._answer(key)
            if action is not None:
                self._last = action
                return action
        action = self._advance()
        self._last = action
        return action

    def _answer(self, key: str | None) -> Action | None:
        """Handle the key for the current phase; an Action means "ask again"."""
        if self.phase == _LANG:
            choose = self.flow.language.choose
            assert choose is not None
            if key is not None and key in choose.keys:
                self.language = choose.keys[key]
                self._next_phase()
                return None
            if self.attempt <= choose.retries:
                return self._ask_language(invalid=key is not None)
            self._next_phase()
            return None
        q = self._question()
        if key is not None and key in q.keys:
            self.answers[q.criterion] = q.keys[key]
            self.how[q.criterion] = "caller"
            self._next_phase()
            return None
        if self.attempt <= q.retries:
            return self._ask_question(q, invalid=key is not None)
        if q.default is not None:
            self.answers[q.criterion] = q.default
            self.how[q.criterion] = "default"
        self._next_phase()
        return None

    def _next_phase(self) -> None:
        self.attempt = 0
        self.phase = self._after(self.phase)

    def _after(self, phase: str) -> str:
        if phase == _LANG:
            return _GREET
        if phase == _GREET:
            return "q0" if self.flow.questions else _TRANSFER
        if phase.startswith("q"):
            i = int(phase[1:]) + 1
            return f"q{i}" if i < len(self.flow.questions) else _TRANSFER
        return _DONE

    def _advance(self) -> Action:
        while True:
            phase = self.phase
            if phase == _LANG:
                return self._ask_language(invalid=False)
            if phase == _GREET:
                self.phase = self._after(phase)
                if self.flow.greeting is not None:
                    return self._say(self.flow.greeting)
                continue
            if phase.startswith("q"):
                q = self._question()
                known = self.known.get(q.criterion)
                if q.skip_if_known and known is not None and known in q.keys.values():
                    self.answers[q.criterion] = known
                    self.how[q.criterion] = "known"
                    self.phase = self._after(phase)
                    continue
                return self._ask_question(q, invalid=False)
            if phase == _TRANSFER:
                self.phase = _DONE
                if self.flow.transfer is not None:
                    return self._say(self.flow.transfer)
                continue
            return Done(self.language, dict(self.answers), dict(self.how))

    def _question(self) -> Question:
        return self.flow.questions[int(self.phase[1:])]

    def _ask_language(self, invalid: bool) -> Ask:
        choose = self.flow.language.choose
        assert choose is not None
        self.attempt += 1
        prompt = choose.prompt
        langs = list(prompt.texts)
        return Ask(
            tuple(prompt.sound(lang) for lang in langs),
            tuple(prompt.text(lang) for lang in langs),
            frozenset(choose.keys),
            choose.timeout,
            _LANG,
        )

    def _ask_question(self, q: Question, invalid: bool) -> Ask:
        self.attempt += 1
        sounds, texts = self._parts(q.prompt)
        if invalid and q.invalid is not None:
            pre_s, pre_t = self._parts(q.invalid)
            sounds, texts = pre_s + sounds, pre_t + texts
        return Ask(sounds, texts, frozenset(q.keys), q.timeout, q.criterion)

    def _say(self, prompt: Prompt) -> Say:
        sounds, texts = self._parts(prompt)
        return Say(sounds, texts)

    def _parts(self, prompt: Prompt) -> tuple[tuple[str, ...], tuple[str, ...]]:
        lang = self.language if self.language in prompt.texts else next(iter(prompt.texts))
        return (prompt.sound(lang),), (prompt.text(lang),)

    def max_duration(self, prompt_seconds: float = 10.0) -> float:
        """An upper bound of the flow's length (for a handler deadline), assuming each
        prompt plays at most `prompt_seconds`."""
        total = 2 * prompt_seconds  # greeting + transfer
        choose = self.flow.language.choose
        if choose is not None:
            total += (choose.retries + 1) * (len(choose.prompt.texts) * prompt_seconds + choose.timeout)
        for q in self.flow.questions:
            total += (q.retries + 1) * (2 * prompt_seconds + q.timeout)
        return total


__all__ = ["Action", "Ask", "Done", "IvrRun", "Say"]
